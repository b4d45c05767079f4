// One function per subcommand: each adds its flags to the app and returns
// the action that runs it (its exit code).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace genie::cli {

using Action = std::function<int()>;

void AddRecordCommand(CLI::App& app, Action* action);
void AddTraceCommand(CLI::App& app, Action* action);
// The options of `genie serve`, added to `cmd`; the genie-serve executable
// (the only one that links LibTorch) parses them.
void AddServeOptions(CLI::App* cmd, Action* action);
// `genie serve ARGS...`: runs genie-serve, found beside this executable, with ARGS.
void AddServeCommand(CLI::App& app, Action* action);
void AddRunCommand(CLI::App& app, Action* action);
void AddDiffCommand(CLI::App& app, Action* action);
void AddAnalyzeCommand(CLI::App& app, Action* action);
// `genie plan` and `genie plans list|show|rm|gc`.
void AddPlanCommands(CLI::App& app, Action* action);

// Prints "genie: error: <message>" to stderr and returns `code`.
int Fail(const std::string& message, int code = 1);

}  // namespace genie::cli

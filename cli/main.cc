// genie: record, inspect and replay PyTorch programs on remote accelerators.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"

namespace {

// `genie record [options] -- PROGRAM ...` and `genie run [options] --
// PROGRAM ...`: the `--` is optional. CLI11 ends option parsing at `--` and
// then rejects the program as unexpected arguments of a command that takes
// the rest untouched (a prefix command), so the `--` that ends such a
// command's own options is dropped. Only one before the program: anything
// from the program on is its own, a `--` among its arguments included.
std::vector<std::string> DropSeparator(CLI::App& app, std::vector<std::string> args) {
  if (args.size() < 2) return args;
  std::vector<CLI::App*> found = app.get_subcommands([&](CLI::App* c) { return c->check_name(args[1]); });
  if (found.empty() || !found.front()->get_prefix_command()) return args;
  const CLI::App* cmd = found.front();
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
    if (a.size() < 2 || a[0] != '-') break;  // the program (or a trace)
    if (a.find('=') != std::string::npos) continue;  // --pool=local
    const CLI::Option* opt = cmd->get_option_no_throw(a);
    if (opt != nullptr && opt->get_items_expected_min() > 0) ++i;  // the option's value
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef GENIE_RUNTIME_ONLY
  CLI::App app{"genie (runtime-only build): serve a device with `genie serve`, inspect traces with `genie trace`,\n"
               "compare them with `genie diff`."};
#else
  CLI::App app{"genie: run unchanged PyTorch programs on remote accelerators.\n"
               "Capture a program with `genie record`, inspect traces with `genie trace`,\n"
               "classify them with `genie analyze`, plan them with `genie plan`,\n"
               "replay them with `genie run` on runtimes started with `genie serve`,\n"
               "compare them with `genie diff`."};
#endif
  app.name("genie");
  app.require_subcommand(1);
  app.set_version_flag("--version", GENIE_VERSION);
  genie::cli::Action action;
#ifndef GENIE_RUNTIME_ONLY
  genie::cli::AddRecordCommand(app, &action);
  genie::cli::AddAnalyzeCommand(app, &action);
  genie::cli::AddPlanCommands(app, &action);
  genie::cli::AddRunCommand(app, &action);
#endif
  genie::cli::AddTraceCommand(app, &action);
  genie::cli::AddDiffCommand(app, &action);
  genie::cli::AddServeCommand(app, &action);
  std::vector<std::string> args(argv, argv + argc);
  args = DropSeparator(app, args);
  std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);  // CLI11 takes them reversed, without argv[0]
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    genie::cli::Fail(e.what(), 2);
    std::fprintf(stderr, "run `genie --help` or `genie <command> --help` for usage\n");
    return 2;
  }
  return action ? action() : 0;
}

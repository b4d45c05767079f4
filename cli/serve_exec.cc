#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>

#include "cli/commands.h"

namespace genie::cli {

std::string SiblingExecutable(const std::string& name) {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return name;
  exe[n] = '\0';
  std::string dir(exe);
  return dir.substr(0, dir.rfind('/') + 1) + name;
}

void AddServeCommand(CLI::App& app, Action* action) {
  CLI::App* cmd = app.add_subcommand("serve", "Run the thin runtime next to a device (see `genie serve --help`)");
  cmd->prefix_command();
  cmd->allow_extras();
  cmd->set_help_flag();  // --help goes to genie-serve, which knows the options
  cmd->callback([cmd, action] {
    *action = [cmd]() -> int {
      std::string exe = SiblingExecutable("genie-serve");
      std::vector<std::string> args = {exe};
      for (const auto& a : cmd->remaining()) args.push_back(a);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      return Fail("cannot run " + exe + ": " + std::strerror(errno));
    };
  });
}

}  // namespace genie::cli

// genie-serve: the runtime executable, the only one that links LibTorch.
// `genie serve ARGS` runs it with ARGS; GPU nodes may run it directly.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"genie serve: the thin runtime next to a device; executes segments for `genie run`"};
  app.name("genie serve");
  genie::cli::Action action;
  genie::cli::AddServeOptions(&app, &action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    genie::cli::Fail(e.what(), 2);
    return 2;
  }
  return action ? action() : 0;
}

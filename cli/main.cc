// genie: record, inspect and replay PyTorch programs on remote accelerators.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"

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
#ifndef GENIE_RUNTIME_ONLY
  args = genie::cli::DropRecordSeparator(args);
#endif
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

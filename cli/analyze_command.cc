#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <memory>

#include "analyzer/analysis.h"
#include "cli/commands.h"
#include "replayer/pool_config.h"
#include "traces/trace_paths.h"

namespace genie::cli {
namespace {

struct AnalyzeArgs {
  std::string trace;
  bool json = false;
  std::string dot;
  std::vector<std::string> patterns;
  std::string config;
};

int Analyze(const AnalyzeArgs& a) {
  auto resolved = traces::TraceOrNewest(a.trace);
  if (!resolved.ok()) return Fail(resolved.status().message());
  const std::string& trace = resolved.value();
  auto config = replayer::LoadConfig(a.config);
  if (!config.ok()) return Fail(config.status().message());
  std::vector<std::string> files = config.value().patterns;
  files.insert(files.end(), a.patterns.begin(), a.patterns.end());
  auto library = analyzer::PatternLibrary::WithFiles(files);
  if (!library.ok()) return Fail(library.status().message());
  auto analysis = analyzer::AnalyzeTrace(trace, library.value());
  if (!analysis.ok()) return Fail(analysis.status().message());
  if (!a.dot.empty()) {
    std::ofstream f(a.dot, std::ios::trunc);
    f << analyzer::AnalysisDot(analysis.value());
    if (!f.flush()) return Fail(a.dot + ": cannot write the graph");
  }
  if (a.json) std::cout << analyzer::AnalysisJson(analysis.value()) << "\n";
  else std::cout << analyzer::AnalysisText(analysis.value());
  return 0;
}

}  // namespace

void AddAnalyzeCommand(CLI::App& app, Action* action) {
  auto args = std::make_shared<AnalyzeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "analyze", "Classify a trace's workload (llm, vision, recsys, multimodal, dense; training or inference) with the "
                 "patterns that matched, and report its phases, costs and network bytes");
  cmd->add_option("trace", args->trace, "Trace file (default: the newest under ./traces/)");
  cmd->add_flag("--json", args->json, "Print JSON (every segment's statistics included)");
  cmd->add_option("--dot", args->dot, "Write the segment graph, patterns highlighted, for Graphviz to FILE");
  cmd->add_option("--patterns", args->patterns,
                  "A YAML pattern file to add to the built-in library (repeatable; after genie.yaml's `patterns:`)")
      ->allow_extra_args(false);
  cmd->add_option("--config", args->config, "genie.yaml to read (default: ./genie.yaml, $GENIE_CONFIG, ~/.config/genie/)");
  cmd->callback([args, action] { *action = [args] { return Analyze(*args); }; });
}

}  // namespace genie::cli

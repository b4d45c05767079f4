#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "traces/trace_diff.h"

namespace genie::cli {
namespace {

// Exit codes of `genie diff`, for CI scripts.
constexpr int kNoRegression = 0;
constexpr int kRegression = 1;
constexpr int kDiffError = 2;

struct DiffArgs {
  std::string base, next;
  bool json = false;
  std::string fail_on = "ops,shapes,bytes";
  double threshold = 0;
  size_t max_changes = 20;
};

int Diff(const DiffArgs& a) {
  auto categories = traces::ParseDiffCategories(a.fail_on);
  if (!categories.ok()) return Fail("--fail-on: " + categories.status().message(), kDiffError);
  traces::DiffOptions options;
  options.fail_on = categories.value();
  options.threshold_pct = a.threshold;
  auto diff = traces::DiffTraces(a.base, a.next, options);
  if (!diff.ok()) return Fail(diff.status().message(), kDiffError);
  if (a.json) std::cout << traces::DiffJson(diff.value(), options) << "\n";
  else traces::PrintDiffText(diff.value(), options, a.max_changes, std::cout);
  std::cout.flush();
  return diff.value().regressions.empty() ? kNoRegression : kRegression;
}

}  // namespace

void AddDiffCommand(CLI::App& app, Action* action) {
  auto args = std::make_shared<DiffArgs>();
  CLI::App* cmd = app.add_subcommand(
      "diff",
      "Compare two traces: ops added, removed or changed per module path, bytes, payloads, timings.\n"
      "Exit status: 0 no regression, 1 a regression past the threshold, 2 an error (unreadable trace).");
  cmd->add_option("base", args->base, "The reference trace")->required();
  cmd->add_option("new", args->next, "The trace to check against it")->required();
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->add_option("--fail-on", args->fail_on,
                  "Comma-separated categories that count as a regression: ops (added, removed or re-schema'd ops), "
                  "shapes (output dtypes or shapes), bytes (transfer or payload growth), time (capture time growth)")
      ->capture_default_str();
  cmd->add_option("--threshold", args->threshold,
                  "Percent a category's measure must exceed to regress (ops and shapes: share of the base's ops; "
                  "bytes and time: growth)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-changes", args->max_changes, "Differences listed in the text report")->capture_default_str();
  cmd->callback([args, action] { *action = [args] { return Diff(*args); }; });
}

}  // namespace genie::cli

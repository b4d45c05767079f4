#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/human_format.h"
#include "recorder/recorder.h"

namespace genie::cli {
namespace {

std::string ShellJoin(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?") == std::string::npos;
    s += plain ? a : "'" + a + "'";
  }
  return s;
}

}  // namespace

void AddRecordCommand(CLI::App& app, Action* action) {
  auto opts = std::make_shared<recorder::RecordOptions>();
  CLI::App* cmd = app.add_subcommand("record", "Run a program and capture its remote_accelerator graphs into a trace\n"
                                     "usage: genie record [-o FILE] [--payload full|inputs|none] [--] PROGRAM [ARGS...]");
  cmd->footer(
      "The program runs with the capture frontend on its import path; its stdout, stderr and exit status pass "
      "through.\nThe summary goes to stderr. Without -o the trace is written to traces/<program>-<time>.gtrace.");
  cmd->add_option("-o,--output", opts->output, "Trace file to write");
  cmd->add_option("--payload", opts->payload,
                  "Tensor bytes to store: full (parameters, inputs, materialized outputs), inputs, or none")
      ->check(CLI::IsMember({"full", "inputs", "none"}));
  cmd->prefix_command();
  cmd->callback([cmd, opts, action] { *action = [cmd, opts]() -> int {
    opts->argv = cmd->remaining();
    if (opts->argv.empty()) return Fail("genie record needs a program to run, e.g. `genie record python3 train.py`", 2);
    opts->command_line = ShellJoin(opts->argv);
    auto res = recorder::Record(*opts);
    if (!res.ok()) return Fail(res.status().message());
    const recorder::RecordResult& r = res.value();
    for (const auto& p : r.problems) Fail(p);
    const auto& s = r.stats;
    std::fprintf(stderr, "genie record: %s segments, %s ops (%s distinct) in %s\n", FormatCount(s.segments).c_str(),
                 FormatCount(s.ops).c_str(), FormatCount(s.distinct_ops).c_str(), FormatSeconds(r.capture_ns).c_str());
    std::fprintf(stderr, "  payloads %s (%s), trace %s", FormatCount(s.payloads).c_str(),
                 FormatBytes(s.payload_bytes).c_str(), FormatBytes(s.file_bytes).c_str());
    if (s.ops > 0)
      std::fprintf(stderr, ", graph %s (%.1f B/op)", FormatBytes(s.segment_bytes).c_str(),
                   static_cast<double>(s.segment_bytes) / static_cast<double>(s.ops));
    std::fprintf(stderr, "\n");
    if (r.truncated) std::fprintf(stderr, "  trace is truncated: %s\n", r.reason.c_str());
    std::fprintf(stderr, "  wrote %s\n", r.trace_path.c_str());
    return r.problems.empty() || r.exit_status != 0 ? r.exit_status : 1;
  }; });
}

}  // namespace genie::cli

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "common/human_format.h"
#include "common/json_writer.h"
#include "traces/trace_dump.h"
#include "traces/trace_paths.h"
#include "traces/trace_reader.h"

namespace genie::cli {
namespace {

struct TraceArgs {
  std::string path;
  bool json = false;
};

int Info(const TraceArgs& a) {
  auto path = traces::TraceOrNewest(a.path);
  if (!path.ok()) return Fail(path.status().message());
  auto sum = traces::SummarizeTrace(path.value());
  if (!sum.ok()) return Fail(sum.status().message());
  const traces::TraceSummary& s = sum.value();
  const traces::TraceFooter& f = s.footer;
  if (a.json) {
    JsonWriter w;
    w.BeginObject().Key("trace").String(path.value()).Key("format_version").Uint(s.header.format_version);
    w.Key("header").BeginObject();
    for (const auto& [k, v] : s.header.fields) w.Key(k).String(v);
    w.EndObject();
    w.Key("segments").Uint(f.segments).Key("distinct_fingerprints").Uint(s.distinct_fingerprints);
    w.Key("ops").Uint(f.ops).Key("distinct_ops").Uint(s.distinct_ops).Key("inputs").Uint(s.inputs);
    w.Key("materializations").Uint(s.materializations).Key("payloads").Uint(f.payloads);
    w.Key("payload_bytes").Uint(f.payload_bytes).Key("file_bytes").Uint(s.file_bytes);
    w.Key("graph_bytes").Uint(s.graph_bytes);
    w.Key("capture_ns").Uint(f.capture_ns).Key("exit_status").Int(f.exit_status);
    w.Key("truncated").Bool(f.truncated).Key("reason").String(f.reason).EndObject();
    std::cout << w.str() << "\n";
    return 0;
  }
  std::printf("trace          %s\n", path.value().c_str());
  std::printf("format         %u\n", s.header.format_version);
  for (const auto& [k, v] : s.header.fields) std::printf("%-14s %s\n", k.c_str(), v.c_str());
  std::printf("status         %s\n", f.truncated ? ("truncated: " + f.reason).c_str() : "complete");
  std::printf("exit status    %lld\n", static_cast<long long>(f.exit_status));
  std::printf("segments       %s (%s distinct fingerprints)\n", FormatCount(f.segments).c_str(),
              FormatCount(s.distinct_fingerprints).c_str());
  std::printf("ops            %s (%s distinct)\n", FormatCount(f.ops).c_str(), FormatCount(s.distinct_ops).c_str());
  std::printf("inputs         %s\n", FormatCount(s.inputs).c_str());
  std::printf("materialized   %s\n", FormatCount(s.materializations).c_str());
  std::printf("payloads       %s (%s)\n", FormatCount(f.payloads).c_str(), FormatBytes(f.payload_bytes).c_str());
  std::printf("file size      %s (graphs %s)\n", FormatBytes(s.file_bytes).c_str(), FormatBytes(s.graph_bytes).c_str());
  std::printf("capture time   %s\n", FormatSeconds(f.capture_ns).c_str());
  return 0;
}

int Dump(const TraceArgs& a) {
  auto path = traces::TraceOrNewest(a.path);
  if (!path.ok()) return Fail(path.status().message());
  auto reader = traces::TraceReader::Open(path.value());
  if (!reader.ok()) return Fail(reader.status().message());
  Status st = traces::DumpTrace(reader.value().get(), a.json ? traces::DumpFormat::kJson : traces::DumpFormat::kText,
                                std::cout);
  std::cout.flush();
  if (!st.ok()) return Fail(st.message());
  return 0;
}

}  // namespace

void AddTraceCommand(CLI::App& app, Action* action) {
  CLI::App* trace = app.add_subcommand("trace", "Inspect a trace");
  trace->require_subcommand(1);
  auto args = std::make_shared<TraceArgs>();
  CLI::App* info = trace->add_subcommand("info", "Header, counts and sizes of a trace");
  info->add_option("trace", args->path, "Trace file (default: the newest under ./traces/)");
  info->add_flag("--json", args->json, "Print JSON");
  CLI::App* dump = trace->add_subcommand("dump", "Print a trace in canonical form (stable across recordings)");
  dump->add_option("trace", args->path, "Trace file (default: the newest under ./traces/)");
  dump->add_flag("--json", args->json, "Print JSON");
  info->callback([args, action] { *action = [args] { return Info(*args); }; });
  dump->callback([args, action] { *action = [args] { return Dump(*args); }; });
}

}  // namespace genie::cli

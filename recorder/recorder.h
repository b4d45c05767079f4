// `genie record`: runs a program with the capture frontend on its import path
// and writes what the frontend sends into a trace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "recorder/launcher.h"
#include "traces/trace_writer.h"

namespace genie::recorder {

struct RecordOptions {
  std::vector<std::string> argv;  // the program and its arguments
  std::string output;             // trace path; empty: traces/<program>-<time>.gtrace
  std::string payload = "full";   // full | inputs | none
  std::string command_line;       // for the trace header
};

struct RecordResult {
  std::string trace_path;
  int exit_status = 0;  // the program's: its exit code, or 128 + signal
  uint64_t capture_ns = 0;
  traces::TraceWriterStats stats;
  bool truncated = false;
  std::string reason;                 // why the trace is truncated
  std::vector<std::string> problems;  // one line each, for the user (e.g. an interpreter without torch)
};

// Starts the program, records until it exits and every connection closes,
// and closes the trace. The program's stdin, stdout and stderr are its own.
// Fails (leaving no trace file) when the program cannot be started or the
// trace cannot be created; a program that fails or crashes still gives a
// readable trace, marked truncated.
Result<RecordResult> Record(const RecordOptions& options);

}  // namespace genie::recorder

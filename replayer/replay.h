// `genie run TRACE`: replays a recorded trace on a runtime and verifies the
// results against the values recorded with it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "replayer/runtime_client.h"

namespace genie::replayer {

struct ReplayOptions {
  int repeat = 1;        // replays of the whole trace in one session
  double rtol = 1e-4;    // floats match when |a - b| <= atol + rtol * |b|
  double atol = 1e-5;
  std::string timeline;  // Chrome/Perfetto trace JSON to write, "" for none
  // Called after each segment with (done, total) segments, for a progress bar.
  std::function<void(uint64_t, uint64_t)> progress;
  // Called as payloads go up with (bytes sent, bytes to send).
  std::function<void(uint64_t, uint64_t)> upload_progress;
};

struct Mismatch {
  uint64_t segment = 0;
  uint64_t value = 0;
  std::string what;  // one line: why the value differs
};

struct ReplayReport {
  uint64_t segments = 0;      // per repeat
  uint64_t ops = 0;           // per repeat
  uint64_t payloads = 0;      // distinct payloads the trace needs
  uint64_t uploaded_blobs = 0;
  uint64_t uploaded_bytes = 0;        // payload bytes sent
  uint64_t already_present = 0;       // payloads the runtime held before
  ClientCounters counters;
  std::vector<double> segment_ms;     // client wall time per segment, all repeats
  std::vector<double> runtime_ms;     // runtime execution time per segment
  double upload_ms = 0;
  uint64_t verified = 0;              // recorded values compared
  uint64_t unverified = 0;            // materializations recorded without a payload
  double max_abs_error = 0;
  double max_rel_error = 0;
  std::vector<Mismatch> mismatches;
};

// Replays every segment of the trace at `path` through `client`: one query
// for the payloads it needs, one pipelined upload of those missing, then one
// round trip per segment. Errors (unreadable trace, runtime failure) are
// returned; value mismatches are reported in the result.
Result<ReplayReport> Replay(const std::string& path, RuntimeClient& client, const ReplayOptions& options);

// Median of `v` (0 when empty).
double Median(std::vector<double> v);

}  // namespace genie::replayer

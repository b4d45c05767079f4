// Live mode, `genie run --pool P PROGRAM [ARGS...]`: the program runs with the
// capture frontend in remote mode. Each segment it closes (at a
// materialization point) comes here over the unix socket, runs on a runtime
// in one round trip (new payloads pipelined ahead of it), and only the
// materialized values go back to the program. Values stay on the runtime
// between segments until the program drops them; payloads go up once per
// runtime, by content hash.
#pragma once

#include <sched.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "replayer/runtime_client.h"
#include "traces/trace_file.h"

namespace genie::replayer {

// A runtime a live program can use: its pool's first.
struct LiveEndpoint {
  std::string pool;
  std::string address;
  std::string token;
};

// The stored plan a live program follows: the runtime its first fragment is
// placed on, or nothing when no stored plan covers the program.
using PlanFinder = std::function<Result<std::optional<LiveEndpoint>>(uint64_t first_fingerprint)>;

struct LiveOptions {
  std::vector<std::string> argv;  // the program and its arguments
  // The pool's runtime, then its backup pool's, and so on. When one is lost
  // (unreachable, silent past the heartbeat timeout, or its connection
  // breaks), the session's segments so far are replayed on the next and the
  // segment is retried there: the program does not notice.
  std::vector<LiveEndpoint> endpoints;
  // With a backup, the segments and payloads sent so far are kept for that
  // replay, up to this many bytes; beyond it failover is off (and says so).
  uint64_t journal_limit = 4ull << 30;
  std::function<void(const std::string&)> notice;  // one line per failover, for the user
  // Seconds without an answered heartbeat after which the runtime counts as dead (0: no monitor).
  double heartbeat_timeout = 10;
  // New payload bytes in one segment above which the runtime is first asked
  // which it already holds (a model's weights), instead of sending them blind.
  uint64_t query_threshold = 1u << 20;
  // Called with the fingerprint of the program's first segment: a plan's
  // runtime replaces the first endpoint's. Unset: no plan is looked up.
  PlanFinder find_plan;
  // Where the program's segments go (without payload bytes) when no plan
  // covers them, to plan from once it exits; "" for nowhere.
  std::string trace_path;
  traces::TraceHeader trace_header;
  // Answer a materialization from the value its step's first part fetched
  // early, when it can be (live.cc, early answers; GENIE_EARLY_ANSWERS=0: never).
  bool early_answers = true;
  // The CPUs the program may run on (recorder::SplitCpus); unset: those it inherits.
  std::optional<cpu_set_t> program_cpus;
};

struct LiveReport {
  int exit_status = 0;           // the program's: its exit code, or 128 + signal
  std::string exit_description;  // "exited with status 0"
  uint64_t connections = 0;      // frontends (processes) that connected
  uint64_t segments = 0;           // materialization points: one round trip each
  uint64_t parts = 0;              // of those segments, parts sent ahead (FrameType::kPart)
  uint64_t ops = 0;
  uint64_t materialized = 0;
  uint64_t released = 0;          // values freed on the runtime as the program dropped them
  uint64_t uploaded_blobs = 0;
  uint64_t uploaded_bytes = 0;
  uint64_t already_present = 0;   // payloads the runtime held before they were sent
  uint64_t uploaded_ahead = 0;    // of the uploads, those sent as they arrived, ahead of their segment
  uint64_t ring_payloads = 0;     // large inputs the program moved through the shared ring (RING_PAYLOAD)
  ClientCounters counters;        // summed over connections
  std::vector<double> segment_ms;  // genie's round trip per segment
  std::vector<double> runtime_ms;  // the runtime's execution per segment
  uint64_t graph_segments = 0;     // segments the runtime ran as replayed CUDA graphs
  uint64_t ran_ahead = 0;          // template runs the runtime had run before they came (server.cc, run-ahead)
  uint64_t template_runs = 0;      // segments sent as a template's run (genie.proto Execute.from_template)
  uint64_t cycles = 0;             // steps sent as one RunCycle (their template runs are counted above)
  uint64_t pushed = 0;             // of those, answered by the runtime before the RunCycle went (genie.proto CyclePush)
  uint64_t answered_first = 0;     // materializations answered before their segment ran (genie.proto ExecuteReply)
  uint64_t answered_early = 0;     // materializations answered from a value fetched early (live.cc, early answers)
  uint64_t answered_pushed = 0;    // of those, answered by the frontend from an EARLY frame, with no wait
  // A failure of ops the program sent after its last answer, found once it
  // ended (live.cc Ended): the program was never told.
  std::string late_error;
  std::string device, torch_version;
  std::string pool, address;  // where the last segment ran
  uint64_t failovers = 0;
  std::string error;  // the first failure reported to the program, "" if none
  std::string trace_path;  // the segments written for planning ("" when a plan was followed)
  std::string trace_error; // why writing them stopped, "" if it did not
};

// Starts the program and serves its segments until it exits and its
// connections close. Fails only when the program cannot be started; a
// runtime that fails or dies is reported to the program (which raises) and
// in `error`.
Result<LiveReport> RunLive(const LiveOptions& options);

}  // namespace genie::replayer

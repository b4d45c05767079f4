// The ExecutionPlan (DESIGN.md): how a recorded workload runs on a pool.
//
// A plan covers the distinct segment fingerprints of a trace (its trace key
// is a hash of them) on one pool. It splits the work into fragments placed on
// the pool's runtimes and devices, says what stays resident there (weights,
// KV caches, optimizer state, embedding tables), schedules the transfers in
// batches, and sets feature flags for the runtime.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "analyzer/analysis.h"
#include "common/status.h"

namespace genie::planner {

// What the planner needs to know about a pool.
struct PoolShape {
  struct Runtime {
    std::string address;               // host:port, or "loopback" for --pool local
    std::vector<std::string> devices;  // "cuda:0", "cpu", or "default" (the runtime's own)
  };
  std::string name;
  std::vector<Runtime> runtimes;
};

struct Placement {
  uint32_t runtime = 0;
  std::string address;
  std::string device;
};

struct Fragment {
  uint32_t index = 0;
  std::string name;     // "decode", "stage 1", "table Rec.bags.0", "encoder Model.image"
  std::string role;     // prefill, decode, forward, step, stage, table, encoder, fusion, dense
  std::vector<std::string> modules;  // module path prefixes it runs; empty: everything not placed elsewhere
  Placement placement;
  double flops = 0;
  uint64_t parameter_bytes = 0;
};

struct Residency {
  std::string kind;  // weights, kv_cache, optimizer_state, embedding_table
  std::string what;  // which tensors, in words
  uint64_t bytes = 0;
  uint32_t fragment = 0;
};

struct TransferBatch {
  uint32_t index = 0;
  std::string when;       // "once, before the first segment", "each segment"
  std::string direction;  // up, down
  uint64_t bytes = 0;
  uint64_t tensors = 0;
  uint32_t fragment = 0;
};

struct ExecutionPlan {
  std::string id;         // UUIDv4
  std::string pool;
  std::string trace_key;  // TraceKey(fingerprints)
  std::string trace_path; // the trace it was planned from
  std::vector<uint64_t> fingerprints;  // distinct, sorted
  analyzer::WorkloadClass klass = analyzer::WorkloadClass::kNone;
  bool class_overridden = false;  // --pattern chose the class
  double confidence = 0;
  bool training = false;
  std::string strategy;   // one line, for people
  std::vector<Fragment> fragments;
  std::vector<Residency> residency;
  std::vector<TransferBatch> transfers;
  std::map<std::string, std::string> feature_flags;
  std::string created;    // UTC, ISO 8601
  std::string last_used;  // "" until a run used it
  uint64_t uses = 0;
};

// The key a plan is stored under for a trace: 32 hex digits of SHA-256 over
// the trace's distinct segment fingerprints, sorted.
std::string TraceKey(const std::vector<uint64_t>& fingerprints);

// A fresh random UUIDv4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx").
std::string NewPlanId();

// Plans `analysis` for `pool`. `klass` overrides the analysis's class unless
// it is kNone. Fails with InvalidArgument for a pool without devices.
Result<ExecutionPlan> MakePlan(const analyzer::Analysis& analysis, const PoolShape& pool, analyzer::WorkloadClass klass);

// Average size of the batches sent once (the weights): the schedule's target is >= 1 MB.
double AverageStartupBatchBytes(const ExecutionPlan& plan);

std::string PlanText(const ExecutionPlan& plan);
std::string PlanJson(const ExecutionPlan& plan);

}  // namespace genie::planner

// The plan store: ExecutionPlans in one SQLite file (default
// ~/.local/share/genie/plans.db), keyed by (trace key, pool).
//
// Schema (PRAGMA application_id = 0x47454E49 "GENI"; PRAGMA user_version is
// the schema version; each version is one migration, applied in a transaction):
//   v1  plans(id PK, trace_key, pool, class, class_overridden, confidence,
//             training, strategy, trace_path, created), UNIQUE(trace_key, pool)
//       plan_fingerprints(plan_id, fingerprint)      -- signed 64-bit
//       fragments(plan_id, idx, name, role, modules, runtime, address, device,
//                 flops, parameter_bytes)             -- modules joined by '\n'
//       residency(plan_id, idx, kind, what, bytes, fragment)
//       transfers(plan_id, idx, phase, direction, bytes, tensors, fragment)
//       feature_flags(plan_id, name, value)
//       Child rows go with their plan (ON DELETE CASCADE).
//   v2  plans.last_used, plans.uses (for `genie plans gc`), and
//       trace_index(path PK, size, mtime_ns, trace_key): the key of a trace
//       file already read, so finding its plan needs no second read.
// The golden test tests/golden/store/schema.sql fails when this changes by accident.
//
// Concurrency: WAL journal, a 30 s busy timeout, and every write in a
// BEGIN IMMEDIATE transaction, so several processes can plan into one store
// at once; a killed writer leaves the store as it was before its transaction.
//
// Errors name the file: a file that is not SQLite, an SQLite file that is not
// a plan store, a store with a newer schema than this genie reads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "planner/execution_plan.h"

struct sqlite3;

namespace genie::planner {

constexpr int kStoreSchemaVersion = 2;

struct PlanSummary {
  std::string id, pool, klass, trace_path, created, last_used;
  uint64_t uses = 0;
  uint64_t fragments = 0;
};

struct GcReport {
  uint64_t plans_removed = 0;
  uint64_t index_rows_removed = 0;
};

class PlanStore {
 public:
  // Opens (creating it and its folder if missing) and migrates the store.
  static Result<std::unique_ptr<PlanStore>> Open(const std::string& path);
  ~PlanStore();

  // Stores `plan`; a plan already stored for its (trace key, pool) is replaced
  // and its id returned in `replaced` ("" when there was none).
  Status Put(const ExecutionPlan& plan, std::string* replaced = nullptr);
  // The plan for a trace key on a pool, if one is stored.
  Result<std::optional<ExecutionPlan>> Find(const std::string& trace_key, const std::string& pool);
  // The newest plan on `pool` that covers a segment with this fingerprint
  // (how a live program finds its plan from its first segment), if any.
  Result<std::optional<ExecutionPlan>> FindCovering(uint64_t fingerprint, const std::string& pool);
  // By id or a unique prefix of one (at least 4 characters); NotFound otherwise.
  Result<ExecutionPlan> Get(const std::string& id);
  Result<std::vector<PlanSummary>> List();
  // Removes the plan with this id (or unique prefix); returns its full id.
  Result<std::string> Remove(const std::string& id);
  // Records a run that used the plan.
  Status MarkUsed(const std::string& id);
  // Removes plans unused (and, if never used, created) more than `days` ago,
  // and index rows of trace files that no longer exist.
  Result<GcReport> Gc(double days);

  // The trace key remembered for a file of this size and modification time.
  Result<std::optional<std::string>> CachedTraceKey(const std::string& path, uint64_t size, int64_t mtime_ns);
  Status RememberTraceKey(const std::string& path, uint64_t size, int64_t mtime_ns, const std::string& key);

  // The schema as SQL, in a stable order (the golden test compares it).
  Result<std::string> SchemaSql();
  const std::string& path() const { return path_; }

 private:
  PlanStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Status Migrate();
  Result<ExecutionPlan> Load(const std::string& id);
  Status Exec(const std::string& sql);
  Status Error(const std::string& what) const;

  std::string path_;
  sqlite3* db_;
};

// The store to use: `explicit_path`, else $GENIE_STORE, else genie.yaml's
// `store:`, else ~/.local/share/genie/plans.db ("~/" expanded).
std::string ResolveStorePath(const std::string& explicit_path, const std::string& config_store);

}  // namespace genie::planner

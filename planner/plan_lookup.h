// Finding the plan for a trace on a pool, or making and storing one: what
// `genie plan` and `genie run` share.
#pragma once

#include <string>

#include "analyzer/pattern_library.h"
#include "common/status.h"
#include "planner/execution_plan.h"
#include "planner/plan_store.h"

namespace genie::planner {

// The trace key of the file at `path`: remembered in the store's trace index
// for a file of the same size and modification time, else read from the
// trace (its segment fingerprints) and remembered.
Result<std::string> TraceKeyOf(PlanStore& store, const std::string& path);

struct PlanChoice {
  ExecutionPlan plan;
  bool from_store = false;  // found, not made
  std::string replaced;     // the id of a stored plan the new one replaced, or ""
};

// The stored plan for the trace on `pool` when there is one (and, if `klass`
// is not kNone, of that class); otherwise analyzes the trace with `library`,
// plans it and stores the plan. `replan` skips the lookup.
Result<PlanChoice> FindOrMakePlan(PlanStore& store, const std::string& trace_path, const PoolShape& pool,
                                  const analyzer::PatternLibrary& library, analyzer::WorkloadClass klass, bool replan);

}  // namespace genie::planner

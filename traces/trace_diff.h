// `genie diff`: what changed between two recordings of a program.
//
// Alignment. Segments are aligned by the sequence of their ops' identities
// (schema, module path, phase) with a sequence diff, so an inserted or
// removed segment (an extra print, one more decode step) shifts nothing after
// it; segments left over between matches are paired in order. Inside each
// pair the ops are aligned the same way: an op present only in the new trace
// is added, only in the base removed; matched ops whose output dtypes or
// shapes differ are changed (shape), and an added and a removed op of the
// same module and phase at the same place of a replaced stretch are one op
// whose schema changed. Recorded inputs (parameters, tensors) take part as
// steps named "input parameter" / "input tensor".
//
// Segments that repeat (each training or decode step) are diffed once per
// distinct pair, so a million-op trace costs little more than reading it.
//
// Regressions. Each category compares a measure against `threshold_pct`:
//   ops     added + removed + schema-changed ops, in % of the base's ops;
//   shapes  ops whose output dtypes or shapes changed, in % of the base's ops;
//   bytes   growth of the bytes a remote run moves (uploaded inputs plus
//           materialized results) or of the stored payload bytes, in %;
//   time    growth of the recorded capture time, in % (only when both
//           traces carry one).
// A category regresses when its measure exceeds the threshold.
#pragma once

#include <cstdint>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace genie::traces {

enum class DiffCategory { kOps, kShapes, kBytes, kTime };
const char* DiffCategoryName(DiffCategory c);
// "ops,shapes" -> {kOps, kShapes}; InvalidArgument naming an unknown category.
Result<std::set<DiffCategory>> ParseDiffCategories(const std::string& list);

struct DiffOptions {
  std::set<DiffCategory> fail_on = {DiffCategory::kOps, DiffCategory::kShapes, DiffCategory::kBytes};
  double threshold_pct = 0;
};

// What one trace amounts to.
struct TraceTotals {
  std::string path;
  std::string torch_version;
  uint64_t segments = 0;
  uint64_t ops = 0;
  uint64_t inputs = 0;
  uint64_t upload_bytes = 0;    // inputs a remote run sends: each payload once, else each input
  uint64_t download_bytes = 0;  // materialized tensors
  uint64_t payloads = 0;
  uint64_t payload_bytes = 0;
  uint64_t capture_ns = 0;      // the program's wall time under the recorder; 0 if not recorded
  bool truncated = false;

  uint64_t transfer_bytes() const { return upload_bytes + download_bytes; }
};

// One kind of difference, with how often it occurs.
struct OpChange {
  enum class Kind { kAdded, kRemoved, kSchema, kShape };
  Kind kind = Kind::kAdded;
  std::string module;       // "" outside any module
  std::string phase;
  std::string base_schema;  // empty for kAdded
  std::string new_schema;   // empty for kRemoved
  std::string base_outputs; // "float32[8,16]", empty for kAdded
  std::string new_outputs;  // empty for kRemoved
  uint64_t count = 0;
  // Where it first occurs: segment positions (in the base and the new trace)
  // and op positions within them (step indices; -1 on the side that lacks it).
  uint64_t base_segment = 0, new_segment = 0;
  int64_t base_step = -1, new_step = -1;
};
const char* OpChangeKindName(OpChange::Kind k);

struct ModuleDelta {
  std::string module;
  uint64_t base_ops = 0, new_ops = 0;
  uint64_t added = 0, removed = 0, schema_changed = 0, shape_changed = 0;
};

struct Regression {
  DiffCategory category;
  double measured_pct;  // may be infinite (growth from zero)
  std::string what;     // one line, for people
};

struct TraceDiff {
  TraceTotals base, next;
  uint64_t segments_matched = 0;  // paired, identical
  uint64_t segments_changed = 0;  // paired, with differences
  uint64_t segments_added = 0, segments_removed = 0;
  uint64_t ops_added = 0, ops_removed = 0, ops_schema_changed = 0, ops_shape_changed = 0;
  std::vector<OpChange> changes;    // ordered by first occurrence in the new trace
  std::vector<ModuleDelta> modules; // modules with any difference, by path
  std::vector<Regression> regressions;
  // A stretch of segments or ops too different to align exactly was paired by position.
  bool approximate = false;

  bool identical() const {
    return changes.empty() && segments_added == 0 && segments_removed == 0;
  }
};

// Reads both traces and compares them. Fails (naming the file) when either
// cannot be read; a trace whose recording was truncated is compared as far
// as it goes.
Result<TraceDiff> DiffTraces(const std::string& base_path, const std::string& new_path, const DiffOptions& options);

// Relative change in percent: 0 when both are 0, +inf when growing from 0.
double PercentChange(double base, double next);

// The report for people: totals with relative changes, the module paths that
// changed, the differences (at most `max_changes`), and the verdict.
void PrintDiffText(const TraceDiff& diff, const DiffOptions& options, size_t max_changes, std::ostream& out);
// Everything, for machines.
std::string DiffJson(const TraceDiff& diff, const DiffOptions& options);

}  // namespace genie::traces

// The pattern library: what `genie analyze` looks for in a trace, as data.
//
// Built-in patterns (kBuiltinPatterns, YAML) and user pattern files share one
// format. A file holds `patterns:`, a list of entries:
//
//   - name: attention            # unique; a later file's entry replaces an earlier one of the same name
//     class: llm                 # the workload class it is evidence for: llm, vision, recsys,
//                                # multimodal, dense; leave out for evidence that votes for none
//     weight: 2                  # how much one match counts for the class (default 1)
//     modality: text             # optional: image, text or tabular; marks the module branch it is
//                                # found in, for the fusion kind
//     min_count: 1               # matches needed before it counts (default 1)
//     kind: chain                # one of the kinds below, with its keys
//
// Kinds (op lists name ATen schemas; "aten::add" matches every overload,
// "aten::add.Tensor" only that one):
//   ops:          `ops: [..]`: any op in the list.
//   chain:        `steps: [{ops: [..]}, ..]`, `via: [..]`: each step's op consumes
//                 the previous step's result, directly or through `via` ops.
//   carried:      `ops: [..]`: an op in the list consuming a value that an op
//                 in the list produced (or wrote in place) in an earlier segment,
//                 like a KV cache grown by aten::cat at every decode step.
//   residual:     `ops: [..]`, `through: [..]`: an op in the list (an add) whose
//                 one input is computed from its other through an op of `through`.
//   interaction:  `sources: [..]`, `ops: [..]`: an op in the list joining values
//                 computed from different source ops (embedding tables).
//   fusion:       joins values computed in different top-level modules (branches,
//                 `Model.image`, `Model.text`) whose modalities differ.
//   phase:        `phase: decode`, `min_segments: N`: segments of that phase.
//
// A malformed file is InvalidArgument naming the file, the line and the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace genie::analyzer {

// kNone ("unclassified"): no pattern that votes for a class matched.
enum class WorkloadClass { kNone = 0, kLlm, kVision, kRecsys, kMultimodal, kDense };
constexpr int kNumWorkloadClasses = 6;
const char* WorkloadClassName(WorkloadClass c);
Result<WorkloadClass> WorkloadClassFromName(const std::string& name);  // InvalidArgument on others

enum class Modality { kNone = 0, kImage, kText, kTabular };
const char* ModalityName(Modality m);

// A list of op schemas; an entry without an overload matches every overload.
struct OpList {
  std::vector<std::string> names;
  bool Matches(const std::string& schema) const;
};

struct Pattern {
  enum class Kind { kOps, kChain, kCarried, kResidual, kInteraction, kFusion, kPhase };
  std::string name;
  std::string origin;  // "built-in" or the file it came from
  WorkloadClass klass = WorkloadClass::kNone;
  double weight = 1;
  Modality modality = Modality::kNone;
  uint64_t min_count = 1;
  Kind kind = Kind::kOps;
  OpList ops;                  // kOps, kCarried, kResidual, kInteraction
  std::vector<OpList> steps;   // kChain
  OpList via;                  // kChain
  OpList through;              // kResidual
  OpList sources;              // kInteraction
  std::string phase;           // kPhase: a phase name (trace PhaseName)
  uint64_t min_segments = 1;   // kPhase
};
const char* PatternKindName(Pattern::Kind k);

class PatternLibrary {
 public:
  // The built-in patterns.
  static PatternLibrary Builtin();
  // The built-in patterns, then each file's in order (a later pattern replaces an earlier one of its name).
  static Result<PatternLibrary> WithFiles(const std::vector<std::string>& files);

  // Adds the patterns of a YAML document; `origin` names it in errors.
  Status AddYaml(const std::string& text, const std::string& origin);
  Status AddFile(const std::string& path);

  const std::vector<Pattern>& patterns() const { return patterns_; }

 private:
  std::vector<Pattern> patterns_;
};

extern const char* const kBuiltinPatterns;

}  // namespace genie::analyzer

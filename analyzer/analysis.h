// `genie analyze`: one streaming pass over a trace that matches the pattern
// library, classifies the workload and gathers the costs a plan needs.
//
// Classification. Every pattern that matched at least `min_count` times adds
// weight x (1 + log10(matches)) to its class; the class with the highest
// score wins, with confidence = best / (best + runner-up) (1 when nothing else
// scored). A trace with backward-phase ops is training, else inference.
//
// Costs (estimates from recorded shapes): FLOPs are 2·M·N·K for matrix
// products, 2·out·(weight elements / out channels) for convolutions, one per
// output element for other computing ops, zero for views. Network bytes per
// segment are given twice: with remote residency (only new inputs go up and
// only materialized values come back) and without (every tensor a segment
// uses from elsewhere goes up, and every value a later segment uses comes
// back). The critical path is the longest dependency chain of each segment,
// summed over segments (materializations are barriers).
//
// Patterns match forward computation: ops of the backward and optimizer
// phases count toward phases and costs, not toward patterns. The sources of
// all interaction patterns are pooled.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "analyzer/pattern_library.h"
#include "common/status.h"

namespace genie::analyzer {

struct PatternMatch {
  std::string name;
  std::string kind;
  WorkloadClass klass = WorkloadClass::kNone;
  double weight = 0;
  uint64_t count = 0;
  bool counted = false;  // count >= min_count: it voted
  std::vector<std::pair<std::string, uint64_t>> modules;  // where, most matches first (at most 8)
};

struct SegmentStats {
  uint64_t index = 0;
  uint32_t stream = 0;
  uint64_t fingerprint = 0;
  std::string phase;  // the phases its ops ran in: "decode", "forward+backward+optimizer", "none"
  uint64_t ops = 0;
  double flops = 0;
  uint64_t activation_bytes = 0;  // outputs that own new storage
  uint64_t up_resident = 0, down_resident = 0;
  uint64_t up_no_residency = 0, down_no_residency = 0;
  uint64_t critical_ops = 0;
  double critical_flops = 0;
  uint64_t patterns = 0;  // bit i: the library's pattern i matched in it
};

// A top-level module (the first two parts of a module path, `ResNet.layer1`).
struct Branch {
  std::string name;
  uint64_t first_op = 0;  // program order of its first op
  uint64_t ops = 0;
  double flops = 0;
  uint64_t parameter_bytes = 0;  // parameters it consumes first
  std::string modality;
};

struct EmbeddingTable {
  std::string module;
  uint64_t bytes = 0;
  std::vector<int64_t> shape;
};

// A data dependency between two segments (bytes without residency).
struct SegmentEdge {
  uint64_t from = 0, to = 0;  // segment ordinals
  uint64_t bytes = 0;
};

struct Analysis {
  std::string path;
  uint64_t segments = 0, ops = 0;
  WorkloadClass klass = WorkloadClass::kNone;
  double confidence = 0;
  bool training = false;
  std::string optimizer;  // "adam", "sgd" or "" when none ran
  std::vector<std::pair<WorkloadClass, double>> scores;  // highest first
  std::vector<PatternMatch> matches;                      // patterns that matched, by library order
  std::vector<std::pair<std::string, uint64_t>> histogram;  // op schema -> count, most first
  std::map<std::string, uint64_t> phase_ops;
  std::map<std::string, uint64_t> phase_segments;
  uint64_t parameters = 0, parameter_bytes = 0;
  uint64_t input_bytes = 0;       // non-parameter inputs
  uint64_t activation_bytes = 0;
  uint64_t kv_cache_bytes = 0;    // largest total output of carried matches in one segment (the KV cache)
  double flops = 0;
  uint64_t net_resident = 0, net_no_residency = 0;
  uint64_t critical_path_ops = 0;
  double critical_path_flops = 0;
  std::vector<SegmentStats> segment_stats;
  std::vector<SegmentEdge> edges;
  std::vector<Branch> branches;  // in program order
  std::vector<EmbeddingTable> embedding_tables;
  std::vector<uint64_t> fingerprints;  // distinct, sorted
  std::vector<std::string> pattern_names;  // the library's, by index (for SegmentStats::patterns)
};

Result<Analysis> AnalyzeTrace(const std::string& path, const PatternLibrary& library);

// Reports: text for people, JSON, and the segment graph for Graphviz.
std::string AnalysisText(const Analysis& a);
std::string AnalysisJson(const Analysis& a);
std::string AnalysisDot(const Analysis& a);

}  // namespace genie::analyzer

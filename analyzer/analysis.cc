#include "analyzer/analysis.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

#include "traces/prefetching_reader.h"

namespace genie::analyzer {
namespace {

using traces::Arg;
using traces::Op;
using traces::Phase;
using traces::Segment;
using traces::Step;
using traces::StringId;
using traces::TensorMeta;
using traces::ValueId;

constexpr uint32_t kNone32 = std::numeric_limits<uint32_t>::max();
constexpr ValueId kNoValue = std::numeric_limits<ValueId>::max();
constexpr size_t kMaxOpLists = 256;
constexpr size_t kMaxResidualVisits = 96;
constexpr size_t kMaxFusionEvents = 4096;

using Membership = std::bitset<kMaxOpLists>;

struct ValueInfo {
  uint64_t bytes = 0;
  int64_t numel = 0, dim0 = 0, dimlast = 0;
  uint32_t segment = kNone32;  // ordinal of the defining segment; kNone32: unknown value
  uint32_t producer = kNone32; // index into the op table
  uint32_t last_use_segment = kNone32;
  uint64_t chain_bits = 0;
  uint64_t source_mask = 0;
  uint64_t branch_mask = 0;
  uint32_t carried_bits = 0;
  uint32_t depth = 0;
  double depth_flops = 0;
  bool parameter = false;
  ValueId param_root = kNoValue;  // the parameter input whose storage this value views
  bool attributed = false;  // a parameter whose bytes went to a branch
  bool returned = false;    // counted as coming back (no residency)
  bool mark_heavy = false;  // Walk's state
  uint32_t mark = 0;
};

// Values by id, in pages that never move: ids are the frontend's dense
// generation counters, so a flat table beats a hash map.
class ValueTable {
 public:
  static constexpr ValueId kMaxIds = ValueId{1} << 28;
  size_t size() const { return pages_.size() << kShift; }
  ValueInfo& operator[](ValueId id) { return (*pages_[id >> kShift])[id & kMask]; }
  const ValueInfo& operator[](ValueId id) const { return (*pages_[id >> kShift])[id & kMask]; }
  // Makes room for `id` (below kMaxIds, which the caller checks).
  ValueInfo& Grow(ValueId id) {
    while (id >= size()) pages_.push_back(std::make_unique<Page>());
    return (*this)[id];
  }

 private:
  static constexpr int kShift = 16;
  static constexpr ValueId kMask = (ValueId{1} << kShift) - 1;
  using Page = std::array<ValueInfo, size_t{1} << kShift>;
  std::vector<std::unique_ptr<Page>> pages_;
};

struct OpNode {
  uint32_t in_begin = 0;
  uint16_t in_count = 0;
  StringId schema = 0;
};

// A pattern compiled against the op-list bit indices.
struct Compiled {
  const Pattern* p;
  int ops = -1, via = -1, through = -1, sources = -1;
  std::vector<int> steps;
  int chain_offset = 0;  // first bit in ValueInfo::chain_bits
  int carried_bit = 0;
};

bool IsInPlace(const std::string& schema) {
  size_t dot = schema.find('.');
  std::string name = schema.substr(0, dot);
  return !name.empty() && name.back() == '_';
}

class Analyzer {
 public:
  explicit Analyzer(const PatternLibrary& lib) : lib_(lib) {}

  Status Compile() {
    int chain_bits = 0, carried = 0;
    for (const Pattern& p : lib_.patterns()) {
      Compiled c;
      c.p = &p;
      auto add = [&](const OpList& l) {
        lists_.push_back(&l);
        return static_cast<int>(lists_.size() - 1);
      };
      switch (p.kind) {
        case Pattern::Kind::kOps: c.ops = add(p.ops); break;
        case Pattern::Kind::kChain:
          for (const OpList& s : p.steps) c.steps.push_back(add(s));
          if (!p.via.names.empty()) c.via = add(p.via);
          c.chain_offset = chain_bits;
          chain_bits += static_cast<int>(p.steps.size());
          break;
        case Pattern::Kind::kCarried:
          c.ops = add(p.ops);
          c.carried_bit = carried++;
          break;
        case Pattern::Kind::kResidual:
          c.ops = add(p.ops);
          c.through = add(p.through);
          residual_through_.push_back(c.through);
          break;
        case Pattern::Kind::kInteraction:
          c.ops = add(p.ops);
          c.sources = add(p.sources);
          interaction_sources_.push_back(c.sources);
          break;
        case Pattern::Kind::kFusion:
        case Pattern::Kind::kPhase: break;
      }
      compiled_.push_back(c);
    }
    if (lists_.size() > kMaxOpLists)
      return Status::InvalidArgument("the pattern library has " + std::to_string(lists_.size()) + " op lists; at most " +
                                     std::to_string(kMaxOpLists) + " are supported");
    if (chain_bits > 64) return Status::InvalidArgument("chain patterns have more than 64 steps in all");
    if (carried > 32) return Status::InvalidArgument("more than 32 carried patterns");
    counts_.assign(compiled_.size(), 0);
    list_seen_in_.assign(lists_.size(), kNone32);
    module_counts_.resize(compiled_.size());
    return Status::OK();
  }

  Status Run(const std::string& path, Analysis* out) {
    GENIE_ASSIGN_OR_RETURN(auto reader, traces::PrefetchingReader::Open(path));
    out->path = path;
    strings_ = &reader->strings();
    Segment seg;
    std::set<uint64_t> fingerprints;
    while (true) {
      GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
      if (!more) break;
      fingerprints.insert(seg.fingerprint);
      GENIE_RETURN_IF_ERROR(Segment_(seg));
    }
    out->fingerprints.assign(fingerprints.begin(), fingerprints.end());
    Finish(out);
    return Status::OK();
  }

 private:
  const Membership& Member(StringId schema) {
    if (schema >= member_known_.size()) {
      member_known_.resize(schema + 1, false);
      members_.resize(schema + 1);
      in_place_.resize(schema + 1, false);
    }
    if (!member_known_[schema]) {
      const std::string& name = strings_->Get(schema);
      for (size_t i = 0; i < lists_.size(); ++i) members_[schema][i] = lists_[i]->Matches(name);
      in_place_[schema] = IsInPlace(name);
      member_known_[schema] = true;
    }
    return members_[schema];
  }

  ValueTable& Values(uint32_t stream) { return values_[stream]; }

  static void SetMeta(ValueInfo& v, const TensorMeta& m) {
    v.numel = m.numel();
    v.bytes = m.nbytes();
    v.dim0 = m.sizes.empty() ? 1 : m.sizes.front();
    v.dimlast = m.sizes.empty() ? 1 : m.sizes.back();
  }

  int BranchOf(StringId module) {
    if (module >= branch_of_.size()) branch_of_.resize(module + 1, -2);
    if (branch_of_[module] != -2) return branch_of_[module];
    const std::string& path = strings_->Get(module);
    size_t first = path.find('.');
    int b = -1;
    if (first != std::string::npos) {
      size_t second = path.find('.', first + 1);
      std::string name = path.substr(0, second);
      auto it = branch_index_.find(name);
      if (it == branch_index_.end()) {
        it = branch_index_.emplace(name, static_cast<int>(branches_.size())).first;
        Branch br;
        br.name = name;
        br.first_op = op_ordinal_;
        branches_.push_back(br);
        branch_modality_.emplace_back();
      }
      b = it->second;
    }
    branch_of_[module] = b;
    return b;
  }

  void Match(size_t pattern, StringId module, int branch) {
    ++counts_[pattern];
    std::vector<uint64_t>& by_module = module_counts_[pattern];
    if (module >= by_module.size()) by_module.resize(module + 1, 0);
    ++by_module[module];
    if (pattern < 64) cur_->patterns |= 1ull << pattern;
    const Pattern& p = *compiled_[pattern].p;
    if (p.modality != Modality::kNone && branch >= 0)
      branch_modality_[branch][static_cast<int>(p.modality)] += p.weight;
  }

  void Collect(const Arg& a, std::vector<ValueId>* ins) {
    if (a.kind == Arg::Kind::kTensor) ins->push_back(a.tensor);
    else if (a.kind == Arg::Kind::kList)
      for (const Arg& x : a.list) Collect(x, ins);
  }

  Status Segment_(const Segment& seg) {
    for (const Step& step : seg.steps) {
      ValueId last = step.kind == Step::Kind::kInput ? step.input.id
                     : step.op.outputs.empty()       ? 0
                                                     : step.op.outputs.back().id;
      if (last >= ValueTable::kMaxIds)
        return Status::Unsupported("segment " + std::to_string(seg.index) + " defines value id " + std::to_string(last) +
                                   ", beyond the " + std::to_string(ValueTable::kMaxIds) + " values analyze handles");
    }
    const uint32_t ordinal = static_cast<uint32_t>(stats_.size());
    stats_.emplace_back();
    cur_ = &stats_.back();
    cur_->index = seg.index;
    cur_->stream = seg.stream;
    cur_->fingerprint = seg.fingerprint;
    cur_carried_bytes_ = 0;
    ValueTable& vals = Values(seg.stream);
    uint64_t phase_count[8] = {};
    for (const Step& step : seg.steps) {
      if (step.kind == Step::Kind::kInput) {
        const traces::Input& in = step.input;
        ValueInfo& v = vals.Grow(in.id);
        v = ValueInfo();
        SetMeta(v, in.meta);
        v.segment = ordinal;
        v.parameter = in.kind == traces::Input::Kind::kParameter;
        if (v.parameter) {
          v.param_root = in.id;
          ++parameters_;
          parameter_bytes_ += v.bytes;
        } else {
          input_bytes_ += v.bytes;
        }
        cur_->up_resident += v.bytes;
        cur_->up_no_residency += v.bytes;
        continue;
      }
      ++phase_count[static_cast<int>(step.op.phase) & 7];
      OpStep(step.op, ordinal, vals);
    }
    for (const auto& m : seg.materialized) {
      if (m.id >= vals.size()) continue;
      cur_->down_resident += vals[m.id].bytes;
      cur_->down_no_residency += vals[m.id].bytes;
    }
    max_carried_bytes_ = std::max(max_carried_bytes_, cur_carried_bytes_);
    // Phases present, in program order of a step: forward+backward+optimizer for a training step.
    static const Phase kOrder[] = {Phase::kPrefill, Phase::kDecode, Phase::kForward, Phase::kBackward, Phase::kOptimizer};
    for (Phase p : kOrder)
      if (phase_count[static_cast<int>(p)])
        cur_->phase += std::string(cur_->phase.empty() ? "" : "+") + traces::PhaseName(p);
    if (cur_->phase.empty()) cur_->phase = traces::PhaseName(Phase::kNone);
    for (int p = 0; p < 6; ++p)
      if (phase_count[p]) ++phase_segments_[traces::PhaseName(static_cast<Phase>(p))];
    return Status::OK();
  }

  void OpStep(const Op& op, uint32_t ordinal, ValueTable& vals) {
    const Membership mem = Member(op.schema);  // a copy: Member() may grow the table
    const std::string& schema = strings_->Get(op.schema);
    const bool in_place = in_place_[op.schema];
    const int branch = BranchOf(op.module);
    ins_.clear();
    for (const Arg& a : op.args) Collect(a, &ins_);
    for (const auto& kv : op.kwargs) Collect(kv.second, &ins_);
    if (op.schema >= histogram_.size()) histogram_.resize(op.schema + 1, 0);
    ++histogram_[op.schema];
    ++ops_;
    ++op_ordinal_;
    ++phase_ops_[static_cast<int>(op.phase) & 7];
    if (op.phase == Phase::kBackward) training_ = true;
    if (op.phase == Phase::kOptimizer) {
      if (schema.find("addcdiv") != std::string::npos) adam_ = true;
      else optimizer_ran_ = true;
    }

    const bool forward = op.phase != Phase::kBackward && op.phase != Phase::kOptimizer;
    // Inputs: uses across segments, residency accounting, propagated state.
    uint64_t chain_in = 0, source_or = 0, branch_or = 0;
    uint32_t depth = 0;
    double depth_flops = 0;
    uint64_t source_first = 0, branch_first = 0;
    bool sources_differ = false, branches_differ = false;
    uint64_t branch_and = ~0ull;
    for (ValueId id : ins_) {
      if (id >= vals.size()) continue;  // a value the trace never defined
      ValueInfo& v = vals[id];
      if (v.segment == kNone32) continue;
      if (v.segment != ordinal && v.last_use_segment != ordinal) {
        v.last_use_segment = ordinal;
        cur_->up_no_residency += v.bytes;
        edges_[(static_cast<uint64_t>(v.segment) << 32) | ordinal] += v.bytes;
        if (!v.returned && !v.parameter && v.segment < stats_.size()) {
          v.returned = true;
          stats_[v.segment].down_no_residency += v.bytes;
        }
      }
      if (v.param_root != kNoValue && branch >= 0 && forward) {
        ValueInfo& root = vals.Grow(v.param_root);
        if (!root.attributed) {
          root.attributed = true;
          branches_[branch].parameter_bytes += root.bytes;
        }
      }
      chain_in |= v.chain_bits;
      if (v.source_mask) {
        if (source_first == 0) source_first = v.source_mask;
        else if (v.source_mask != source_first) sources_differ = true;
        source_or |= v.source_mask;
      }
      if (v.branch_mask) {
        if (branch_first == 0) branch_first = v.branch_mask;
        else if (v.branch_mask != branch_first) branches_differ = true;
        branch_or |= v.branch_mask;
        branch_and &= v.branch_mask;
      }
      if (v.segment == ordinal) {
        depth = std::max(depth, v.depth);
        depth_flops = std::max(depth_flops, v.depth_flops);
      }
    }

    // Costs.
    const traces::Output* first_out = nullptr;
    for (const auto& o : op.outputs)
      if (o.is_tensor) {
        first_out = &o;
        break;
      }
    double flops = 0;
    bool view = first_out && first_out->meta.storage != first_out->id && !in_place;
    if (first_out && !view) {
      const int64_t out_numel = first_out->meta.numel();
      auto input = [&](size_t i) -> const ValueInfo* {
        return i < ins_.size() && ins_[i] < vals.size() ? &vals[ins_[i]] : nullptr;
      };
      if (mem[mm_list_]) {
        const ValueInfo* a = input(schema.rfind("aten::addmm", 0) == 0 || schema.rfind("aten::baddbmm", 0) == 0 ? 1 : 0);
        flops = 2.0 * static_cast<double>(out_numel) * static_cast<double>(a ? a->dimlast : 1);
      } else if (mem[conv_list_]) {
        const ValueInfo* w = input(1);
        double per_out = w && w->dim0 > 0 ? static_cast<double>(w->numel) / static_cast<double>(w->dim0) : 1;
        flops = 2.0 * static_cast<double>(out_numel) * per_out;
      } else {
        flops = static_cast<double>(out_numel);
      }
    }
    flops_ += flops;
    cur_->flops += flops;
    ++cur_->ops;
    if (branch >= 0) {
      branches_[branch].ops += 1;
      branches_[branch].flops += flops;
    }

    for (int l : residual_through_)
      if (mem[l]) list_seen_in_[l] = ordinal;
    // Patterns match forward computation only.
    uint64_t chain_out = 0;
    uint32_t carried_out = 0;
    uint64_t source_out = source_or;
    for (size_t i = 0; i < compiled_.size() && forward; ++i) {
      const Compiled& c = compiled_[i];
      switch (c.p->kind) {
        case Pattern::Kind::kOps:
          if (mem[c.ops]) Match(i, op.module, branch);
          break;
        case Pattern::Kind::kChain: {
          const int k = static_cast<int>(c.steps.size());
          uint64_t range = (k >= 64 ? ~0ull : ((1ull << k) - 1)) << c.chain_offset;
          if (c.via >= 0 && mem[c.via]) chain_out |= chain_in & range;
          for (int s = 0; s < k; ++s) {
            if (!mem[c.steps[s]]) continue;
            if (s == 0) {
              chain_out |= 1ull << c.chain_offset;
            } else if (chain_in & (1ull << (c.chain_offset + s - 1))) {
              chain_out |= 1ull << (c.chain_offset + s);
              if (s == k - 1) Match(i, op.module, branch);
            }
          }
          break;
        }
        case Pattern::Kind::kCarried: {
          if (!mem[c.ops]) break;
          const uint32_t bit = 1u << c.carried_bit;
          bool carried = false;
          for (ValueId id : ins_)
            if (id < vals.size() && (vals[id].carried_bits & bit) && vals[id].segment < ordinal) carried = true;
          if (carried) {
            Match(i, op.module, branch);
            for (const auto& o : op.outputs)
              if (o.is_tensor) cur_carried_bytes_ += o.meta.nbytes();
          }
          carried_out |= bit;
          if (in_place && !ins_.empty() && ins_[0] < vals.size()) vals[ins_[0]].carried_bits |= bit;
          break;
        }
        case Pattern::Kind::kResidual:
          // Only a join of two like-sized values, in a segment where an op of `through` ran, can be one.
          if (mem[c.ops] && ins_.size() >= 2 && list_seen_in_[c.through] == ordinal && ins_[0] < vals.size() &&
              ins_[1] < vals.size() && vals[ins_[0]].numel == vals[ins_[1]].numel &&
              Residual(vals, ins_[0], ins_[1], c.through, ordinal))
            Match(i, op.module, branch);
          break;
        case Pattern::Kind::kInteraction:
          if (mem[c.ops] && sources_differ) Match(i, op.module, branch);
          break;
        case Pattern::Kind::kFusion:
        case Pattern::Kind::kPhase: break;
      }
    }
    for (int s : interaction_sources_) {
      if (!mem[s] || ins_.empty()) continue;
      // A table is its weight's parameter (every step's updated weight views the same one).
      ValueId table = ins_[0] < vals.size() && vals[ins_[0]].param_root != kNoValue ? vals[ins_[0]].param_root : ins_[0];
      auto [it, fresh] = source_bits_.emplace(table, source_bits_.size() % 64);
      source_out = 1ull << it->second;
      if (fresh && first_out && forward) {
        EmbeddingTable t;
        t.module = strings_->Get(op.module);
        if (table < vals.size()) t.bytes = vals[table].bytes;
        embedding_weights_.push_back({table, t});
      }
      break;
    }
    if (forward && branches_differ && fusion_events_.size() < kMaxFusionEvents) {
      uint64_t event = branch_or & ~branch_and;
      auto& e = fusion_events_[event];
      if (e.second == 0) e.first = op.module;
      ++e.second;
    }
    uint64_t branch_out = branch_or | (branch >= 0 ? 1ull << (branch % 64) : 0);
    if (!forward) chain_out = source_out = branch_out = 0;  // gradients and updates mix every branch

    // Outputs.
    uint32_t node = static_cast<uint32_t>(op_nodes_.size());
    op_nodes_.push_back({static_cast<uint32_t>(op_inputs_.size()), static_cast<uint16_t>(std::min<size_t>(ins_.size(), 65535)),
                         op.schema});
    op_inputs_.insert(op_inputs_.end(), ins_.begin(), ins_.begin() + op_nodes_.back().in_count);
    for (const auto& o : op.outputs) {
      if (!o.is_tensor) continue;
      ValueInfo& v = vals.Grow(o.id);
      v = ValueInfo();
      SetMeta(v, o.meta);
      v.segment = ordinal;
      v.producer = node;
      v.chain_bits = chain_out;
      v.source_mask = source_out;
      v.branch_mask = branch_out;
      v.carried_bits = carried_out;
      if (o.meta.storage != o.id && o.meta.storage < vals.size()) v.param_root = vals[o.meta.storage].param_root;
      v.depth = depth + 1;
      v.depth_flops = depth_flops + flops;
      cur_->critical_ops = std::max<uint64_t>(cur_->critical_ops, v.depth);
      cur_->critical_flops = std::max(cur_->critical_flops, v.depth_flops);
      if (o.meta.storage == o.id) {
        activation_bytes_ += v.bytes;
        cur_->activation_bytes += v.bytes;
      }
    }
  }

  // Marks the values `from` is computed from (itself included) with `mark`,
  // noting whether the path to each passes an op of `through`: a bounded
  // backward walk within the current segment. With `probe`, stops at the
  // first value already marked by the walk before (`probe` - 1) where either
  // path passed such an op, and returns true.
  bool Walk(ValueTable& vals, ValueId from, int through, uint32_t mark, bool probe, uint32_t segment) {
    walk_.clear();
    walk_.push_back({from, false});
    size_t visited = 0;
    while (!walk_.empty() && visited < kMaxResidualVisits) {
      auto [id, heavy] = walk_.back();
      walk_.pop_back();
      if (id >= vals.size()) continue;
      ValueInfo& v = vals[id];
      if (probe && v.mark == mark - 1 && (heavy || v.mark_heavy)) return true;
      if (v.mark == mark && (v.mark_heavy || !heavy)) continue;  // seen, on a path at least as heavy
      v.mark = mark;
      v.mark_heavy = heavy;
      ++visited;
      if (v.producer == kNone32 || v.segment != segment) continue;
      const OpNode& n = op_nodes_[v.producer];
      bool h = heavy || Member(n.schema)[through];
      for (uint32_t k = 0; k < n.in_count; ++k) walk_.push_back({op_inputs_[n.in_begin + k], h});
    }
    return false;
  }

  // A residual join: `a` and `b` share an ancestor, and one of the paths from
  // it passes an op of `through` (the block the shortcut skips). The common
  // case, an identity shortcut, is found walking back from the later value
  // to the earlier alone; a projection shortcut needs both walks.
  bool Residual(ValueTable& vals, ValueId a, ValueId b, int through, uint32_t segment) {
    if (vals[a].producer != kNone32 && vals[b].producer != kNone32 && vals[a].producer > vals[b].producer) std::swap(a, b);
    mark_ += 2;
    vals[a].mark = mark_ - 1;
    vals[a].mark_heavy = false;
    if (Walk(vals, b, through, mark_, true, segment)) return true;
    mark_ += 2;
    Walk(vals, a, through, mark_ - 1, false, segment);
    return Walk(vals, b, through, mark_, true, segment);
  }

  void Finish(Analysis* out) {
    out->segments = stats_.size();
    out->ops = ops_;
    out->training = training_;
    out->optimizer = adam_ ? "adam" : optimizer_ran_ ? "sgd" : "";
    out->parameters = parameters_;
    out->parameter_bytes = parameter_bytes_;
    out->input_bytes = input_bytes_;
    out->activation_bytes = activation_bytes_;
    out->flops = flops_;
    for (StringId schema = 0; schema < histogram_.size(); ++schema)
      if (histogram_[schema]) out->histogram.push_back({strings_->Get(schema), histogram_[schema]});
    std::sort(out->histogram.begin(), out->histogram.end(),
              [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    for (int p = 0; p < 6; ++p)
      if (phase_ops_[p]) out->phase_ops[traces::PhaseName(static_cast<Phase>(p))] = phase_ops_[p];
    out->phase_segments = phase_segments_;

    // Branch modalities, then the patterns decided at the end: fusion and phases.
    for (size_t b = 0; b < branches_.size(); ++b) {
      int best = 0;
      for (int m = 1; m < 4; ++m)
        if (branch_modality_[b][m] > branch_modality_[b][best]) best = m;
      branches_[b].modality = ModalityName(static_cast<Modality>(best));
    }
    for (size_t i = 0; i < compiled_.size(); ++i) {
      const Pattern& p = *compiled_[i].p;
      if (p.kind == Pattern::Kind::kFusion) {
        for (const auto& [event, first] : fusion_events_) {
          std::set<std::string> modalities;
          for (size_t b = 0; b < branches_.size() && b < 64; ++b)
            if ((event >> b) & 1 && branches_[b].modality != "none") modalities.insert(branches_[b].modality);
          if (modalities.size() < 2) continue;
          counts_[i] += first.second;
          if (first.first >= module_counts_[i].size()) module_counts_[i].resize(first.first + 1, 0);
          module_counts_[i][first.first] += first.second;
        }
      } else if (p.kind == Pattern::Kind::kPhase) {
        auto it = phase_segments_.find(p.phase);
        uint64_t n = it == phase_segments_.end() ? 0 : it->second;
        if (n >= p.min_segments) counts_[i] = n;
      }
    }

    double scores[kNumWorkloadClasses] = {};
    for (size_t i = 0; i < compiled_.size(); ++i) {
      const Pattern& p = *compiled_[i].p;
      out->pattern_names.push_back(p.name);
      if (counts_[i] == 0) continue;
      PatternMatch m;
      m.name = p.name;
      m.kind = PatternKindName(p.kind);
      m.klass = p.klass;
      m.weight = p.weight;
      m.count = counts_[i];
      m.counted = counts_[i] >= p.min_count;
      for (StringId module = 0; module < module_counts_[i].size(); ++module)
        if (module_counts_[i][module]) m.modules.push_back({strings_->Get(module), module_counts_[i][module]});
      std::sort(m.modules.begin(), m.modules.end(),
                [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
      if (m.modules.size() > 8) m.modules.resize(8);
      if (m.counted && p.klass != WorkloadClass::kNone)
        scores[static_cast<int>(p.klass)] += p.weight * (1 + std::log10(static_cast<double>(m.count)));
      out->matches.push_back(std::move(m));
    }
    for (int c = 1; c < kNumWorkloadClasses; ++c)
      if (scores[c] > 0) out->scores.push_back({static_cast<WorkloadClass>(c), scores[c]});
    std::sort(out->scores.begin(), out->scores.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    if (!out->scores.empty()) {
      out->klass = out->scores[0].first;
      double second = out->scores.size() > 1 ? out->scores[1].second : 0;
      out->confidence = out->scores[0].second / (out->scores[0].second + second);
    }

    out->kv_cache_bytes = max_carried_bytes_;
    for (const SegmentStats& s : stats_) {
      out->net_resident += s.up_resident + s.down_resident;
      out->net_no_residency += s.up_no_residency + s.down_no_residency;
      out->critical_path_ops += s.critical_ops;
      out->critical_path_flops += s.critical_flops;
    }
    out->segment_stats = std::move(stats_);
    for (const auto& [key, bytes] : edges_) out->edges.push_back({key >> 32, key & 0xffffffffu, bytes});
    std::sort(out->edges.begin(), out->edges.end(),
              [](const SegmentEdge& a, const SegmentEdge& b) { return a.from != b.from ? a.from < b.from : a.to < b.to; });
    out->branches = branches_;
    for (const auto& [id, t] : embedding_weights_) out->embedding_tables.push_back(t);
  }

  const PatternLibrary& lib_;
  std::vector<Compiled> compiled_;
  std::vector<const OpList*> lists_;
  std::vector<int> interaction_sources_;
  std::vector<int> residual_through_;
  std::vector<uint32_t> list_seen_in_;  // per op list: the last segment an op of it ran in
  int mm_list_ = 0, conv_list_ = 0;
  const traces::StringTable* strings_ = nullptr;
  std::vector<bool> member_known_;
  std::vector<Membership> members_;
  std::vector<bool> in_place_;
  std::unordered_map<uint32_t, ValueTable> values_;
  std::vector<OpNode> op_nodes_;
  std::vector<ValueId> op_inputs_;
  std::vector<ValueId> ins_;
  std::vector<std::pair<ValueId, bool>> walk_;
  uint32_t mark_ = 0;
  std::vector<SegmentStats> stats_;
  SegmentStats* cur_ = nullptr;
  std::vector<uint64_t> counts_;
  std::vector<std::vector<uint64_t>> module_counts_;  // per pattern, by module string id
  std::vector<uint64_t> histogram_;  // by schema string id
  uint64_t phase_ops_[8] = {};
  std::map<std::string, uint64_t> phase_segments_;
  std::unordered_map<uint64_t, uint64_t> edges_;
  std::vector<int> branch_of_;
  std::unordered_map<std::string, int> branch_index_;
  std::vector<Branch> branches_;
  std::vector<std::array<double, 4>> branch_modality_;
  std::unordered_map<ValueId, uint32_t> source_bits_;
  std::vector<std::pair<ValueId, EmbeddingTable>> embedding_weights_;
  std::map<uint64_t, std::pair<StringId, uint64_t>> fusion_events_;
  uint64_t cur_carried_bytes_ = 0, max_carried_bytes_ = 0;  // outputs of carried matches, per segment
  uint64_t ops_ = 0, op_ordinal_ = 0, parameters_ = 0, parameter_bytes_ = 0, input_bytes_ = 0, activation_bytes_ = 0;
  double flops_ = 0;
  bool training_ = false, adam_ = false, optimizer_ran_ = false;

 public:
  // The op lists FLOPs are estimated with (matrix products, convolutions).
  void AddCostLists(const OpList* mm, const OpList* conv) {
    lists_.push_back(mm);
    mm_list_ = static_cast<int>(lists_.size() - 1);
    lists_.push_back(conv);
    conv_list_ = static_cast<int>(lists_.size() - 1);
  }
};

const OpList kMatrixProducts{{"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"}};
const OpList kConvolutions{{"aten::convolution", "aten::_convolution", "aten::mkldnn_convolution",
                            "aten::cudnn_convolution", "aten::thnn_conv2d", "aten::_slow_conv2d_forward"}};

}  // namespace

Result<Analysis> AnalyzeTrace(const std::string& path, const PatternLibrary& library) {
  Analyzer a(library);
  a.AddCostLists(&kMatrixProducts, &kConvolutions);
  GENIE_RETURN_IF_ERROR(a.Compile());
  Analysis out;
  GENIE_RETURN_IF_ERROR(a.Run(path, &out));
  return out;
}

}  // namespace genie::analyzer

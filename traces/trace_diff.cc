#include "traces/trace_diff.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "common/human_format.h"
#include "common/json_writer.h"
#include "traces/sequence_diff.h"
#include "traces/prefetching_reader.h"

namespace genie::traces {
namespace {

// Beyond these many edits a stretch is paired by position instead (see Alignment::minimal).
constexpr size_t kMaxSegmentEdits = 2000;
constexpr size_t kMaxOpEdits = 4000;
constexpr uint32_t kNoSegment = std::numeric_limits<uint32_t>::max();

inline uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

// An op's identity for alignment: schema, module path, phase; shared by both traces.
struct Ident {
  std::string schema;
  std::string module;
  Phase phase;
  bool input;  // a recorded input, not an op
};

class IdentTable {
 public:
  uint32_t Intern(const std::string& schema, const std::string& module, Phase phase, bool input) {
    std::string key(1, input ? 'i' : 'o');
    key += schema;
    key += '\x1f';
    key += module;
    key += '\x1f';
    key += static_cast<char>(phase);
    auto it = index_.find(key);
    if (it != index_.end()) return it->second;
    auto id = static_cast<uint32_t>(idents_.size());
    idents_.push_back({schema, module, phase, input});
    index_.emplace(std::move(key), id);
    return id;
  }
  const Ident& Get(uint64_t id) const { return idents_[id]; }

 private:
  std::vector<Ident> idents_;
  std::unordered_map<std::string, uint32_t> index_;
};

// A segment's steps reduced to what the diff compares; stored once per
// distinct content, however often the segment repeats.
struct DistinctSegment {
  std::vector<uint64_t> idents;       // IdentTable ids
  std::vector<uint64_t> details;      // hash of the step's output dtypes and shapes (a key of OutputTexts)
  uint64_t ident_key = 0;
};

// The output dtypes and shapes behind each detail hash, in words; shared by both traces.
struct OutputTexts {
  std::vector<std::string> texts;
  std::unordered_map<uint64_t, uint32_t> index;
  const std::string& Of(uint64_t detail) const { return texts[index.at(detail)]; }
};

struct LoadedTrace {
  TraceTotals totals;
  std::vector<uint32_t> segments;     // distinct index, per segment position
  std::vector<uint64_t> ident_keys;   // per segment position
  std::vector<DistinctSegment> distinct;
  std::vector<uint64_t> occurrences;  // per distinct segment
};

std::string MetaText(const TensorMeta& m) {
  std::string s = DTypeName(m.dtype);
  s += '[';
  for (size_t i = 0; i < m.sizes.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(m.sizes[i]);
  }
  return s + ']';
}

uint64_t MetaHash(uint64_t h, const TensorMeta& m) {
  h = Mix(h, static_cast<uint64_t>(m.dtype) + 1);
  h = Mix(h, m.sizes.size());
  for (int64_t v : m.sizes) h = Mix(h, static_cast<uint64_t>(v));
  return h;
}

// Sizes of the values of one stream by id: ids are the frontend's dense
// generation counters, so a flat table serves them; an id far beyond the
// values seen falls back to a map.
class ValueBytes {
 public:
  void Set(ValueId id, uint64_t bytes) {
    if (id < kFlatLimit) {
      if (flat_.size() <= id) flat_.resize(std::max<size_t>(id + 1, flat_.size() * 2), kUnknown);
      flat_[id] = bytes;
    } else {
      sparse_[id] = bytes;
    }
  }
  uint64_t Get(ValueId id) const {
    if (id < kFlatLimit) return id < flat_.size() && flat_[id] != kUnknown ? flat_[id] : 0;
    auto it = sparse_.find(id);
    return it == sparse_.end() ? 0 : it->second;
  }

 private:
  static constexpr ValueId kFlatLimit = 1u << 26;
  static constexpr uint64_t kUnknown = ~0ull;
  std::vector<uint64_t> flat_;
  std::unordered_map<ValueId, uint64_t> sparse_;
};

class Loader {
 public:
  Loader(IdentTable* idents, OutputTexts* texts) : idents_(idents), texts_(texts) {}

  Result<LoadedTrace> Load(const std::string& path) {
    GENIE_ASSIGN_OR_RETURN(auto reader, PrefetchingReader::Open(path));
    LoadedTrace t;
    t.totals.path = path;
    t.totals.torch_version = reader->header().Get("torch_version");
    std::unordered_map<uint64_t, std::vector<uint32_t>> by_key;
    std::unordered_set<ContentHash, ContentHashHasher> uploaded;
    std::unordered_map<uint32_t, ValueBytes> value_bytes;  // per stream
    Segment seg;
    DistinctSegment cur;
    while (true) {
      GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
      if (!more) break;
      const StringTable& strings = reader->strings();
      cur.idents.clear();
      cur.details.clear();
      ValueBytes& bytes_of = value_bytes[seg.stream];
      uint64_t key = 0, ident_key = 0;
      for (const Step& step : seg.steps) {
        uint64_t ident, detail;
        if (step.kind == Step::Kind::kInput) {
          const Input& in = step.input;
          ident = InputIdent(in.kind);
          detail = MetaHash(1, in.meta);
          ++t.totals.inputs;
          if (!in.payload || uploaded.insert(*in.payload).second) t.totals.upload_bytes += in.meta.nbytes();
          bytes_of.Set(in.id, in.meta.nbytes());
        } else {
          const Op& op = step.op;
          ident = OpIdent(strings, op);
          detail = 2;
          for (const Output& o : op.outputs) {
            if (!o.is_tensor) {
              detail = Mix(detail, 7);
              continue;
            }
            detail = MetaHash(detail, o.meta);
            bytes_of.Set(o.id, o.meta.nbytes());
          }
          ++t.totals.ops;
        }
        if (texts_->index.emplace(detail, static_cast<uint32_t>(texts_->texts.size())).second)
          texts_->texts.push_back(OutputText(step));
        cur.idents.push_back(ident);
        cur.details.push_back(detail);
        ident_key = Mix(ident_key, ident);
        key = Mix(Mix(key, ident), detail);
      }
      for (const Materialization& m : seg.materialized) t.totals.download_bytes += bytes_of.Get(m.id);
      cur.ident_key = ident_key;
      uint32_t index = kNoSegment;
      auto& candidates = by_key[key];
      for (uint32_t c : candidates)
        if (t.distinct[c].idents == cur.idents && t.distinct[c].details == cur.details) index = c;
      if (index == kNoSegment) {
        index = static_cast<uint32_t>(t.distinct.size());
        candidates.push_back(index);
        t.distinct.push_back(std::move(cur));
        cur = DistinctSegment();
        t.occurrences.push_back(0);
      }
      ++t.occurrences[index];
      t.segments.push_back(index);
      t.ident_keys.push_back(ident_key);
    }
    const TraceFooter& f = *reader->footer();
    t.totals.segments = t.segments.size();
    t.totals.payloads = f.payloads;
    t.totals.payload_bytes = f.payload_bytes;
    t.totals.capture_ns = f.capture_ns;
    t.totals.truncated = f.truncated;
    return t;
  }

 private:
  struct OpKey {
    StringId schema, module;
    Phase phase;
    bool operator==(const OpKey& o) const { return schema == o.schema && module == o.module && phase == o.phase; }
  };
  struct OpKeyHash {
    size_t operator()(const OpKey& k) const {
      return Mix(Mix(k.schema, k.module), static_cast<uint64_t>(k.phase));
    }
  };

  uint64_t OpIdent(const StringTable& strings, const Op& op) {
    OpKey k{op.schema, op.module, op.phase};
    auto it = op_idents_.find(k);
    if (it != op_idents_.end()) return it->second;
    uint32_t id = idents_->Intern(strings.Get(op.schema), strings.Get(op.module), op.phase, false);
    op_idents_.emplace(k, id);
    return id;
  }

  uint64_t InputIdent(Input::Kind kind) {
    return idents_->Intern(std::string("input ") + InputKindName(kind), "", Phase::kNone, true);
  }

  // What a step's detail hash stands for, for people.
  static std::string OutputText(const Step& step) {
    if (step.kind == Step::Kind::kInput) return MetaText(step.input.meta);
    std::string s;
    for (const Output& o : step.op.outputs) {
      if (!s.empty()) s += ", ";
      s += o.is_tensor ? MetaText(o.meta) : "scalar";
    }
    return s;
  }

  IdentTable* idents_;
  OutputTexts* texts_;
  std::unordered_map<OpKey, uint64_t, OpKeyHash> op_idents_;  // per trace: StringIds are per file
};

// One step-level difference inside a pair of segments.
struct Edit {
  OpChange::Kind kind;
  int64_t base_step, new_step;
};

std::vector<Edit> DiffSegments(const IdentTable& idents, const DistinctSegment* a, const DistinctSegment* b,
                               bool* approximate) {
  static const DistinctSegment kEmpty;
  if (!a) a = &kEmpty;
  if (!b) b = &kEmpty;
  std::vector<Edit> edits;
  Alignment al = AlignSequences(a->idents, b->idents, kMaxOpEdits);
  if (!al.minimal) *approximate = true;
  // Matches and gaps in order: walk the gaps, emitting the matches between them.
  std::vector<Gap> gaps = AlignmentGaps(al, a->idents.size(), b->idents.size());
  size_t g = 0;
  auto emit_gap = [&](const Gap& gap) {
    uint32_t i = gap.a_begin, j = gap.b_begin;
    for (; i < gap.a_end && j < gap.b_end; ++i, ++j) {
      const Ident& x = idents.Get(a->idents[i]);
      const Ident& y = idents.Get(b->idents[j]);
      if (x.module == y.module && x.phase == y.phase) {
        edits.push_back({OpChange::Kind::kSchema, i, j});
      } else {
        edits.push_back({OpChange::Kind::kRemoved, i, -1});
        edits.push_back({OpChange::Kind::kAdded, -1, j});
      }
    }
    for (; i < gap.a_end; ++i) edits.push_back({OpChange::Kind::kRemoved, i, -1});
    for (; j < gap.b_end; ++j) edits.push_back({OpChange::Kind::kAdded, -1, j});
  };
  for (auto [i, j] : al.matches) {
    while (g < gaps.size() && gaps[g].a_end <= i && gaps[g].b_end <= j) emit_gap(gaps[g++]);
    if (a->details[i] != b->details[j]) edits.push_back({OpChange::Kind::kShape, i, j});
  }
  while (g < gaps.size()) emit_gap(gaps[g++]);
  return edits;
}

struct PairUse {
  uint32_t a, b;  // distinct indices, kNoSegment for none
  uint64_t count = 0;
  uint64_t first_a = 0, first_b = 0;
};

class Differ {
 public:
  Differ(const IdentTable& idents, const OutputTexts& texts, const LoadedTrace& a, const LoadedTrace& b,
         TraceDiff* out)
      : idents_(idents), texts_(texts), a_(a), b_(b), out_(out) {}

  void Run() {
    Alignment al = AlignSequences(a_.ident_keys, b_.ident_keys, kMaxSegmentEdits);
    if (!al.minimal) out_->approximate = true;
    std::vector<Gap> gaps = AlignmentGaps(al, a_.segments.size(), b_.segments.size());
    size_t g = 0;
    for (auto [i, j] : al.matches) {
      while (g < gaps.size() && gaps[g].a_end <= i && gaps[g].b_end <= j) PairGap(gaps[g++]);
      Use(i, j);
    }
    while (g < gaps.size()) PairGap(gaps[g++]);
    for (const PairUse& p : pairs_) Apply(p);
    Modules();
  }

 private:
  // Segments left between matches are paired in order; the rest were added or removed.
  void PairGap(const Gap& gap) {
    uint32_t i = gap.a_begin, j = gap.b_begin;
    for (; i < gap.a_end && j < gap.b_end; ++i, ++j) Use(i, j);
    for (; i < gap.a_end; ++i) Use(i, kNoSegment);
    for (; j < gap.b_end; ++j) Use(kNoSegment, j);
  }

  // Segment positions i (base) and j (new) are paired; either may be absent.
  void Use(uint32_t i, uint32_t j) {
    uint32_t a = i == kNoSegment ? kNoSegment : a_.segments[i];
    uint32_t b = j == kNoSegment ? kNoSegment : b_.segments[j];
    if (a == kNoSegment) ++out_->segments_added;
    else if (b == kNoSegment) ++out_->segments_removed;
    uint64_t key = (static_cast<uint64_t>(a) << 32) | b;
    auto [it, fresh] = pair_index_.emplace(key, pairs_.size());
    if (fresh) pairs_.push_back({a, b, 0, i == kNoSegment ? 0 : i, j == kNoSegment ? 0 : j});
    ++pairs_[it->second].count;
  }

  void Apply(const PairUse& p) {
    const DistinctSegment* a = p.a == kNoSegment ? nullptr : &a_.distinct[p.a];
    const DistinctSegment* b = p.b == kNoSegment ? nullptr : &b_.distinct[p.b];
    std::vector<Edit> edits;
    if (a && b && a->idents == b->idents && a->details == b->details) {
      out_->segments_matched += p.count;
      return;
    }
    edits = DiffSegments(idents_, a, b, &out_->approximate);
    if (a && b) out_->segments_changed += p.count;
    for (const Edit& e : edits) {
      const Ident* x = e.base_step >= 0 ? &idents_.Get(a->idents[e.base_step]) : nullptr;
      const Ident* y = e.new_step >= 0 ? &idents_.Get(b->idents[e.new_step]) : nullptr;
      const Ident& where = y ? *y : *x;
      std::string base_out = x ? texts_.Of(a->details[e.base_step]) : "";
      std::string new_out = y ? texts_.Of(b->details[e.new_step]) : "";
      std::string key = std::to_string(static_cast<int>(e.kind)) + '\x1f' + (x ? x->schema : "") + '\x1f' +
                        (y ? y->schema : "") + '\x1f' + where.module + '\x1f' + PhaseName(where.phase) + '\x1f' +
                        base_out + '\x1f' + new_out;
      auto [it, fresh] = change_index_.emplace(key, out_->changes.size());
      if (fresh) {
        OpChange c;
        c.kind = e.kind;
        c.module = where.module;
        c.phase = PhaseName(where.phase);
        if (x) c.base_schema = x->schema;
        if (y) c.new_schema = y->schema;
        c.base_outputs = base_out;
        c.new_outputs = new_out;
        c.base_segment = p.first_a;
        c.new_segment = p.first_b;
        c.base_step = e.base_step;
        c.new_step = e.new_step;
        out_->changes.push_back(std::move(c));
      }
      out_->changes[it->second].count += p.count;
      switch (e.kind) {
        case OpChange::Kind::kAdded: out_->ops_added += p.count; break;
        case OpChange::Kind::kRemoved: out_->ops_removed += p.count; break;
        case OpChange::Kind::kSchema: out_->ops_schema_changed += p.count; break;
        case OpChange::Kind::kShape: out_->ops_shape_changed += p.count; break;
      }
    }
  }

  // Op counts per module over a whole trace (recorded inputs excluded).
  std::map<std::string, uint64_t> ModuleOps(const LoadedTrace& t) const {
    std::map<std::string, uint64_t> ops;
    std::unordered_map<uint64_t, uint64_t> per_ident;
    for (size_t d = 0; d < t.distinct.size(); ++d)
      for (uint64_t ident : t.distinct[d].idents) per_ident[ident] += t.occurrences[d];
    for (auto [ident, n] : per_ident) {
      const Ident& id = idents_.Get(ident);
      if (!id.input) ops[id.module] += n;
    }
    return ops;
  }

  void Modules() {
    std::map<std::string, ModuleDelta> deltas;
    for (auto [m, n] : ModuleOps(a_)) deltas[m].base_ops = n;
    for (auto [m, n] : ModuleOps(b_)) deltas[m].new_ops = n;
    for (const OpChange& c : out_->changes) {
      ModuleDelta& d = deltas[c.module];
      switch (c.kind) {
        case OpChange::Kind::kAdded: d.added += c.count; break;
        case OpChange::Kind::kRemoved: d.removed += c.count; break;
        case OpChange::Kind::kSchema: d.schema_changed += c.count; break;
        case OpChange::Kind::kShape: d.shape_changed += c.count; break;
      }
    }
    for (auto& [m, d] : deltas) {
      if (d.base_ops == d.new_ops && d.added + d.removed + d.schema_changed + d.shape_changed == 0) continue;
      d.module = m;
      out_->modules.push_back(d);
    }
  }

  const IdentTable& idents_;
  const OutputTexts& texts_;
  const LoadedTrace& a_;
  const LoadedTrace& b_;
  TraceDiff* out_;
  std::vector<PairUse> pairs_;
  std::unordered_map<uint64_t, size_t> pair_index_;
  std::unordered_map<std::string, size_t> change_index_;
};

void FindRegressions(TraceDiff* d, const DiffOptions& o) {
  const double steps = static_cast<double>(d->base.ops + d->base.inputs);
  auto share = [&](uint64_t n) {
    if (n == 0) return 0.0;
    return steps == 0 ? std::numeric_limits<double>::infinity() : 100.0 * static_cast<double>(n) / steps;
  };
  auto check = [&](DiffCategory c, double pct, const std::string& what) {
    if (o.fail_on.count(c) && pct > 0 && pct > o.threshold_pct) d->regressions.push_back({c, pct, what});
  };
  uint64_t structural = d->ops_added + d->ops_removed + d->ops_schema_changed;
  check(DiffCategory::kOps, share(structural),
        FormatCount(d->ops_added) + " added, " + FormatCount(d->ops_removed) + " removed, " +
            FormatCount(d->ops_schema_changed) + " with another schema");
  check(DiffCategory::kShapes, share(d->ops_shape_changed),
        FormatCount(d->ops_shape_changed) + " with other output dtypes or shapes");
  double transfer = PercentChange(static_cast<double>(d->base.transfer_bytes()), static_cast<double>(d->next.transfer_bytes()));
  double payload = PercentChange(static_cast<double>(d->base.payload_bytes), static_cast<double>(d->next.payload_bytes));
  if (transfer >= payload)
    check(DiffCategory::kBytes, transfer,
          "transfer " + FormatBytes(d->base.transfer_bytes()) + " -> " + FormatBytes(d->next.transfer_bytes()));
  else
    check(DiffCategory::kBytes, payload,
          "payloads " + FormatBytes(d->base.payload_bytes) + " -> " + FormatBytes(d->next.payload_bytes));
  if (d->base.capture_ns > 0 && d->next.capture_ns > 0)
    check(DiffCategory::kTime, PercentChange(static_cast<double>(d->base.capture_ns), static_cast<double>(d->next.capture_ns)),
          "capture time " + FormatSeconds(d->base.capture_ns) + " -> " + FormatSeconds(d->next.capture_ns));
}

std::string Percent(double pct) {
  if (std::isinf(pct)) return "new";
  char buf[32];
  // Small changes keep their digits: a growth of 0.02% is not "+0.0%".
  std::snprintf(buf, sizeof(buf), std::fabs(pct) >= 0.1 || pct == 0 ? "%+.1f%%" : "%+.2g%%", pct);
  return buf;
}

std::string ModuleName(const std::string& m) { return m.empty() ? "(outside any module)" : m; }

std::string CategoriesText(const std::set<DiffCategory>& cs) {
  std::string s;
  for (DiffCategory c : cs) s += std::string(s.empty() ? "" : ",") + DiffCategoryName(c);
  return s.empty() ? "nothing" : s;
}

}  // namespace

const char* DiffCategoryName(DiffCategory c) {
  switch (c) {
    case DiffCategory::kOps: return "ops";
    case DiffCategory::kShapes: return "shapes";
    case DiffCategory::kBytes: return "bytes";
    case DiffCategory::kTime: return "time";
  }
  return "?";
}

const char* OpChangeKindName(OpChange::Kind k) {
  switch (k) {
    case OpChange::Kind::kAdded: return "added";
    case OpChange::Kind::kRemoved: return "removed";
    case OpChange::Kind::kSchema: return "schema";
    case OpChange::Kind::kShape: return "shape";
  }
  return "?";
}

Result<std::set<DiffCategory>> ParseDiffCategories(const std::string& list) {
  std::set<DiffCategory> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string name = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    bool known = false;
    for (DiffCategory c : {DiffCategory::kOps, DiffCategory::kShapes, DiffCategory::kBytes, DiffCategory::kTime}) {
      if (name == DiffCategoryName(c)) {
        out.insert(c);
        known = true;
      }
    }
    if (!known && !(name.empty() && list.empty()))
      return Status::InvalidArgument("unknown category '" + name + "' (expected ops, shapes, bytes or time)");
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

double PercentChange(double base, double next) {
  if (base == next) return 0;
  if (base == 0) return std::numeric_limits<double>::infinity();
  return 100.0 * (next - base) / base;
}

Result<TraceDiff> DiffTraces(const std::string& base_path, const std::string& new_path, const DiffOptions& options) {
  IdentTable idents;
  OutputTexts texts;
  GENIE_ASSIGN_OR_RETURN(LoadedTrace a, Loader(&idents, &texts).Load(base_path));
  GENIE_ASSIGN_OR_RETURN(LoadedTrace b, Loader(&idents, &texts).Load(new_path));
  TraceDiff d;
  d.base = a.totals;
  d.next = b.totals;
  Differ(idents, texts, a, b, &d).Run();
  FindRegressions(&d, options);
  return d;
}

void PrintDiffText(const TraceDiff& d, const DiffOptions& o, size_t max_changes, std::ostream& out) {
  auto side = [&](const char* label, const TraceTotals& t) {
    out << label << t.path << ": " << FormatCount(t.segments) << " segments, " << FormatCount(t.ops) << " ops";
    if (!t.torch_version.empty()) out << ", torch " << t.torch_version;
    if (t.truncated) out << " (truncated)";
    out << "\n";
  };
  side("base  ", d.base);
  side("new   ", d.next);
  auto change = [](uint64_t a, uint64_t b) { return Percent(PercentChange(static_cast<double>(a), static_cast<double>(b))); };
  out << "segments   " << FormatCount(d.segments_matched) << " identical, " << FormatCount(d.segments_changed)
      << " changed, " << FormatCount(d.segments_added) << " added, " << FormatCount(d.segments_removed) << " removed\n";
  out << "ops        " << FormatCount(d.base.ops) << " -> " << FormatCount(d.next.ops) << " ("
      << change(d.base.ops, d.next.ops) << "): " << FormatCount(d.ops_added) << " added, " << FormatCount(d.ops_removed)
      << " removed, " << FormatCount(d.ops_schema_changed) << " schema changed, " << FormatCount(d.ops_shape_changed)
      << " shape changed\n";
  out << "transfer   " << FormatBytes(d.base.transfer_bytes()) << " -> " << FormatBytes(d.next.transfer_bytes()) << " ("
      << change(d.base.transfer_bytes(), d.next.transfer_bytes()) << "); upload " << FormatBytes(d.base.upload_bytes)
      << " -> " << FormatBytes(d.next.upload_bytes) << ", download " << FormatBytes(d.base.download_bytes) << " -> "
      << FormatBytes(d.next.download_bytes) << "\n";
  out << "payloads   " << FormatCount(d.base.payloads) << " (" << FormatBytes(d.base.payload_bytes) << ") -> "
      << FormatCount(d.next.payloads) << " (" << FormatBytes(d.next.payload_bytes) << ") ("
      << change(d.base.payload_bytes, d.next.payload_bytes) << ")\n";
  if (d.base.capture_ns > 0 && d.next.capture_ns > 0)
    out << "capture    " << FormatSeconds(d.base.capture_ns) << " -> " << FormatSeconds(d.next.capture_ns) << " ("
        << change(d.base.capture_ns, d.next.capture_ns) << ")\n";
  if (!d.modules.empty()) {
    out << "modules changed:\n";
    for (const ModuleDelta& m : d.modules) {
      char line[64];
      std::snprintf(line, sizeof(line), "  %-32s", ModuleName(m.module).c_str());
      out << line << " ops " << FormatCount(m.base_ops) << " -> " << FormatCount(m.new_ops);
      if (m.base_ops == 0) out << " (new)";
      else if (m.new_ops == 0) out << " (gone)";
      std::string parts;
      auto part = [&](uint64_t n, const char* what) {
        if (n) parts += (parts.empty() ? "" : ", ") + FormatCount(n) + " " + what;
      };
      part(m.added, "added");
      part(m.removed, "removed");
      part(m.schema_changed, "schema changed");
      part(m.shape_changed, "shape changed");
      if (!parts.empty()) out << ": " << parts;
      out << "\n";
    }
  }
  if (!d.changes.empty()) {
    size_t shown = std::min(max_changes, d.changes.size());
    out << "differences";
    if (shown < d.changes.size()) out << " (first " << shown << " of " << d.changes.size() << " kinds)";
    out << ":\n";
    for (size_t i = 0; i < shown; ++i) {
      const OpChange& c = d.changes[i];
      char head[48];
      std::snprintf(head, sizeof(head), "  %-8s x%-6llu ", OpChangeKindName(c.kind), static_cast<unsigned long long>(c.count));
      out << head;
      switch (c.kind) {
        case OpChange::Kind::kAdded: out << c.new_schema << " -> " << c.new_outputs; break;
        case OpChange::Kind::kRemoved: out << c.base_schema << " -> " << c.base_outputs; break;
        case OpChange::Kind::kSchema: out << c.base_schema << " became " << c.new_schema << " -> " << c.new_outputs; break;
        case OpChange::Kind::kShape: out << c.new_schema << " " << c.base_outputs << " became " << c.new_outputs; break;
      }
      out << "  in " << ModuleName(c.module);
      if (c.phase != PhaseName(Phase::kNone)) out << " " << c.phase;
      if (c.new_step >= 0) out << " (new segment " << c.new_segment << " step " << c.new_step << ")";
      else out << " (base segment " << c.base_segment << " step " << c.base_step << ")";
      out << "\n";
    }
  }
  if (d.approximate) out << "note: stretches too different to align exactly were paired by position\n";
  if (d.regressions.empty()) {
    out << (d.identical() ? "identical" : "no regression") << " (fail on " << CategoriesText(o.fail_on)
        << " above " << o.threshold_pct << "%)\n";
    return;
  }
  out << "regression (fail on " << CategoriesText(o.fail_on) << " above " << o.threshold_pct << "%):\n";
  for (const Regression& r : d.regressions)
    out << "  " << DiffCategoryName(r.category) << " " << Percent(r.measured_pct) << ": " << r.what << "\n";
}

std::string DiffJson(const TraceDiff& d, const DiffOptions& o) {
  JsonWriter w;
  auto totals = [&](const TraceTotals& t) {
    w.BeginObject().Key("path").String(t.path).Key("torch_version").String(t.torch_version);
    w.Key("segments").Uint(t.segments).Key("ops").Uint(t.ops).Key("inputs").Uint(t.inputs);
    w.Key("upload_bytes").Uint(t.upload_bytes).Key("download_bytes").Uint(t.download_bytes);
    w.Key("transfer_bytes").Uint(t.transfer_bytes()).Key("payloads").Uint(t.payloads);
    w.Key("payload_bytes").Uint(t.payload_bytes).Key("capture_ns").Uint(t.capture_ns);
    w.Key("truncated").Bool(t.truncated).EndObject();
  };
  auto pct = [](uint64_t a, uint64_t b) { return PercentChange(static_cast<double>(a), static_cast<double>(b)); };
  w.BeginObject();
  w.Key("base");
  totals(d.base);
  w.Key("new");
  totals(d.next);
  w.Key("identical").Bool(d.identical()).Key("regression").Bool(!d.regressions.empty());
  w.Key("approximate").Bool(d.approximate);
  w.Key("segments").BeginObject().Key("identical").Uint(d.segments_matched).Key("changed").Uint(d.segments_changed);
  w.Key("added").Uint(d.segments_added).Key("removed").Uint(d.segments_removed).EndObject();
  w.Key("ops").BeginObject().Key("added").Uint(d.ops_added).Key("removed").Uint(d.ops_removed);
  w.Key("schema_changed").Uint(d.ops_schema_changed).Key("shape_changed").Uint(d.ops_shape_changed);
  w.Key("change_pct").Double(pct(d.base.ops, d.next.ops)).EndObject();
  w.Key("transfer_change_pct").Double(pct(d.base.transfer_bytes(), d.next.transfer_bytes()));
  w.Key("payload_change_pct").Double(pct(d.base.payload_bytes, d.next.payload_bytes));
  if (d.base.capture_ns > 0 && d.next.capture_ns > 0)
    w.Key("capture_change_pct").Double(pct(d.base.capture_ns, d.next.capture_ns));
  w.Key("modules").BeginArray();
  for (const ModuleDelta& m : d.modules) {
    w.BeginObject().Key("module").String(m.module).Key("base_ops").Uint(m.base_ops).Key("new_ops").Uint(m.new_ops);
    w.Key("change_pct").Double(pct(m.base_ops, m.new_ops));
    w.Key("added").Uint(m.added).Key("removed").Uint(m.removed).Key("schema_changed").Uint(m.schema_changed);
    w.Key("shape_changed").Uint(m.shape_changed).EndObject();
  }
  w.EndArray();
  w.Key("changes").BeginArray();
  for (const OpChange& c : d.changes) {
    w.BeginObject().Key("kind").String(OpChangeKindName(c.kind)).Key("count").Uint(c.count);
    w.Key("module").String(c.module).Key("phase").String(c.phase);
    w.Key("base_schema").String(c.base_schema).Key("new_schema").String(c.new_schema);
    w.Key("base_outputs").String(c.base_outputs).Key("new_outputs").String(c.new_outputs);
    w.Key("base_segment").Uint(c.base_segment).Key("base_step").Int(c.base_step);
    w.Key("new_segment").Uint(c.new_segment).Key("new_step").Int(c.new_step).EndObject();
  }
  w.EndArray();
  w.Key("fail_on").BeginArray();
  for (DiffCategory c : o.fail_on) w.String(DiffCategoryName(c));
  w.EndArray();
  w.Key("threshold_pct").Double(o.threshold_pct);
  w.Key("regressions").BeginArray();
  for (const Regression& r : d.regressions)
    w.BeginObject().Key("category").String(DiffCategoryName(r.category)).Key("measured_pct").Double(r.measured_pct)
        .Key("what").String(r.what).EndObject();
  w.EndArray();
  w.EndObject();
  return w.str();
}

}  // namespace genie::traces

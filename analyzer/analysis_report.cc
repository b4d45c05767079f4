// The three renderings of an Analysis: text, JSON and Graphviz.
#include <cstdio>
#include <map>
#include <sstream>

#include "analyzer/analysis.h"
#include "common/human_format.h"
#include "common/json_writer.h"

namespace genie::analyzer {
namespace {

std::string Flops(double f) {
  const char* units[] = {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"};
  int u = 0;
  while (f >= 1000 && u < 5) {
    f /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u ? "%.2f %s" : "%.0f %s", f, units[u]);
  return buf;
}

std::string Fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Consecutive segments alike in phase, op count and matched patterns: one
// row of the text report, one node of the graph.
struct SegmentGroup {
  size_t first = 0, last = 0;  // ordinals, inclusive
  const SegmentStats* head = nullptr;
  uint64_t up_resident = 0, down_resident = 0, up_none = 0, down_none = 0;
  double flops = 0;
};

std::vector<SegmentGroup> Groups(const Analysis& a, std::vector<size_t>* group_of) {
  std::vector<SegmentGroup> groups;
  group_of->assign(a.segment_stats.size(), 0);
  for (size_t i = 0; i < a.segment_stats.size(); ++i) {
    const SegmentStats& s = a.segment_stats[i];
    if (groups.empty() || groups.back().head->phase != s.phase || groups.back().head->ops != s.ops ||
        groups.back().head->patterns != s.patterns) {
      groups.push_back({i, i, &s});
    }
    SegmentGroup& g = groups.back();
    g.last = i;
    g.up_resident += s.up_resident;
    g.down_resident += s.down_resident;
    g.up_none += s.up_no_residency;
    g.down_none += s.down_no_residency;
    g.flops += s.flops;
    (*group_of)[i] = groups.size() - 1;
  }
  return groups;
}

std::string PatternList(const Analysis& a, uint64_t mask) {
  std::string s;
  for (size_t i = 0; i < a.pattern_names.size() && i < 64; ++i)
    if ((mask >> i) & 1) s += (s.empty() ? "" : ", ") + a.pattern_names[i];
  return s;
}

std::string Range(const SegmentGroup& g) {
  if (g.first == g.last) return "segment " + std::to_string(g.first);
  return "segments " + std::to_string(g.first) + "-" + std::to_string(g.last);
}

const char* ClassColor(WorkloadClass c) {
  switch (c) {
    case WorkloadClass::kLlm: return "#f4cccc";
    case WorkloadClass::kVision: return "#cfe2f3";
    case WorkloadClass::kRecsys: return "#d9ead3";
    case WorkloadClass::kMultimodal: return "#fff2cc";
    case WorkloadClass::kDense: return "#eeeeee";
    case WorkloadClass::kNone: break;
  }
  return "#ffffff";
}

}  // namespace

std::string AnalysisText(const Analysis& a) {
  std::ostringstream out;
  out << "trace      " << a.path << ": " << FormatCount(a.segments) << " segments, " << FormatCount(a.ops) << " ops\n";
  out << "workload   " << WorkloadClassName(a.klass) << " " << (a.training ? "training" : "inference");
  if (!a.optimizer.empty()) out << " (optimizer: " << a.optimizer << ")";
  out << ", confidence " << Fixed(a.confidence, 2) << "\n";
  if (!a.scores.empty()) {
    out << "scores    ";
    for (const auto& [c, s] : a.scores) out << " " << WorkloadClassName(c) << " " << Fixed(s, 1);
    out << "\n";
  }
  if (!a.matches.empty()) {
    out << "evidence:\n";
    for (const PatternMatch& m : a.matches) {
      char head[96];
      std::snprintf(head, sizeof(head), "  %-20s x%-7s %-11s %-10s", m.name.c_str(), FormatCount(m.count).c_str(),
                    m.kind.c_str(), m.klass == WorkloadClass::kNone ? "-" : WorkloadClassName(m.klass));
      out << head;
      if (!m.counted) out << " (below its min_count)";
      if (!m.modules.empty()) {
        out << " in ";
        for (size_t i = 0; i < m.modules.size() && i < 4; ++i)
          out << (i ? ", " : "") << (m.modules[i].first.empty() ? "-" : m.modules[i].first) << " ("
              << FormatCount(m.modules[i].second) << ")";
        if (m.modules.size() > 4) out << ", ...";
      }
      out << "\n";
    }
  }
  out << "phases    ";
  for (const auto& [phase, n] : a.phase_ops) {
    auto seg = a.phase_segments.find(phase);
    out << " " << phase << " " << FormatCount(n) << " ops in " << FormatCount(seg == a.phase_segments.end() ? 0 : seg->second)
        << " segments;";
  }
  out << "\n";
  if (!a.branches.empty()) {
    out << "modules   ";
    for (const Branch& b : a.branches) {
      out << " " << b.name << " (" << FormatCount(b.ops) << " ops, " << Flops(b.flops);
      if (b.modality != "none") out << ", " << b.modality;
      out << ");";
    }
    out << "\n";
  }
  out << "memory     parameters " << FormatCount(a.parameters) << " tensors, " << FormatBytes(a.parameter_bytes)
      << "; inputs " << FormatBytes(a.input_bytes) << "; activations " << FormatBytes(a.activation_bytes);
  if (a.kv_cache_bytes) out << "; KV cache " << FormatBytes(a.kv_cache_bytes);
  out << "\n";
  out << "compute    " << Flops(a.flops) << "; critical path " << FormatCount(a.critical_path_ops) << " ops, "
      << Flops(a.critical_path_flops) << "\n";
  out << "network    " << FormatBytes(a.net_resident) << " with remote residency, " << FormatBytes(a.net_no_residency)
      << " without";
  if (a.net_resident) out << " (" << Fixed(static_cast<double>(a.net_no_residency) / static_cast<double>(a.net_resident), 1) << "x)";
  out << "\n";
  out << "top ops   ";
  for (size_t i = 0; i < a.histogram.size() && i < 8; ++i)
    out << " " << a.histogram[i].first << " " << FormatCount(a.histogram[i].second) << ";";
  out << "\n";
  std::vector<size_t> group_of;
  std::vector<SegmentGroup> groups = Groups(a, &group_of);
  out << "segments:\n";
  const size_t shown = std::min<size_t>(groups.size(), 12);
  for (size_t i = 0; i < shown; ++i) {
    const SegmentGroup& g = groups[i];
    const size_t n = g.last - g.first + 1;
    out << "  " << Range(g) << " " << g.head->phase << ": " << FormatCount(g.head->ops) << " ops" << (n > 1 ? " each" : "")
        << ", " << Flops(g.flops / static_cast<double>(n)) << (n > 1 ? " each" : "") << "; network "
        << FormatBytes((g.up_resident + g.down_resident) / n) << " resident / "
        << FormatBytes((g.up_none + g.down_none) / n) << " without" << (n > 1 ? " (mean)" : "");
    std::string pats = PatternList(a, g.head->patterns);
    if (!pats.empty()) out << "; " << pats;
    out << "\n";
  }
  if (groups.size() > shown) out << "  ... " << FormatCount(groups.size() - shown) << " more groups (--json lists every segment)\n";
  return out.str();
}

std::string AnalysisJson(const Analysis& a) {
  JsonWriter w;
  w.BeginObject().Key("trace").String(a.path).Key("segments").Uint(a.segments).Key("ops").Uint(a.ops);
  w.Key("class").String(WorkloadClassName(a.klass)).Key("confidence").Double(a.confidence);
  w.Key("training").Bool(a.training).Key("optimizer").String(a.optimizer);
  w.Key("scores").BeginObject();
  for (const auto& [c, s] : a.scores) w.Key(WorkloadClassName(c)).Double(s);
  w.EndObject();
  w.Key("patterns").BeginArray();
  for (const PatternMatch& m : a.matches) {
    w.BeginObject().Key("name").String(m.name).Key("kind").String(m.kind).Key("class").String(WorkloadClassName(m.klass));
    w.Key("weight").Double(m.weight).Key("count").Uint(m.count).Key("counted").Bool(m.counted);
    w.Key("modules").BeginArray();
    for (const auto& [mod, n] : m.modules) w.BeginObject().Key("module").String(mod).Key("count").Uint(n).EndObject();
    w.EndArray().EndObject();
  }
  w.EndArray();
  w.Key("histogram").BeginObject();
  for (const auto& [op, n] : a.histogram) w.Key(op).Uint(n);
  w.EndObject();
  w.Key("phases").BeginObject();
  for (const auto& [phase, n] : a.phase_ops) {
    auto seg = a.phase_segments.find(phase);
    w.Key(phase).BeginObject().Key("ops").Uint(n).Key("segments").Uint(seg == a.phase_segments.end() ? 0 : seg->second).EndObject();
  }
  w.EndObject();
  w.Key("modules").BeginArray();
  for (const Branch& b : a.branches)
    w.BeginObject().Key("module").String(b.name).Key("ops").Uint(b.ops).Key("flops").Double(b.flops)
        .Key("parameter_bytes").Uint(b.parameter_bytes).Key("modality").String(b.modality).EndObject();
  w.EndArray();
  w.Key("embedding_tables").BeginArray();
  for (const EmbeddingTable& t : a.embedding_tables)
    w.BeginObject().Key("module").String(t.module).Key("bytes").Uint(t.bytes).EndObject();
  w.EndArray();
  w.Key("parameters").Uint(a.parameters).Key("parameter_bytes").Uint(a.parameter_bytes);
  w.Key("input_bytes").Uint(a.input_bytes).Key("activation_bytes").Uint(a.activation_bytes);
  w.Key("kv_cache_bytes").Uint(a.kv_cache_bytes).Key("flops").Double(a.flops);
  w.Key("network").BeginObject().Key("resident_bytes").Uint(a.net_resident).Key("no_residency_bytes").Uint(a.net_no_residency).EndObject();
  w.Key("critical_path").BeginObject().Key("ops").Uint(a.critical_path_ops).Key("flops").Double(a.critical_path_flops).EndObject();
  w.Key("fingerprints").BeginArray();
  for (uint64_t f : a.fingerprints) {
    char fp[24];
    std::snprintf(fp, sizeof(fp), "%016llx", static_cast<unsigned long long>(f));
    w.String(fp);
  }
  w.EndArray();
  w.Key("segment_stats").BeginArray();
  for (const SegmentStats& s : a.segment_stats) {
    char fp[24];
    std::snprintf(fp, sizeof(fp), "%016llx", static_cast<unsigned long long>(s.fingerprint));
    w.BeginObject().Key("index").Uint(s.index).Key("stream").Uint(s.stream).Key("fingerprint").String(fp);
    w.Key("phase").String(s.phase).Key("ops").Uint(s.ops).Key("flops").Double(s.flops);
    w.Key("activation_bytes").Uint(s.activation_bytes);
    w.Key("up_resident").Uint(s.up_resident).Key("down_resident").Uint(s.down_resident);
    w.Key("up_no_residency").Uint(s.up_no_residency).Key("down_no_residency").Uint(s.down_no_residency);
    w.Key("critical_ops").Uint(s.critical_ops).Key("critical_flops").Double(s.critical_flops);
    w.Key("patterns").BeginArray();
    for (size_t i = 0; i < a.pattern_names.size() && i < 64; ++i)
      if ((s.patterns >> i) & 1) w.String(a.pattern_names[i]);
    w.EndArray().EndObject();
  }
  w.EndArray();
  w.EndObject();
  return w.str();
}

std::string AnalysisDot(const Analysis& a) {
  std::vector<size_t> group_of;
  std::vector<SegmentGroup> groups = Groups(a, &group_of);
  // A pattern's class colours the nodes it matched in; the strongest class wins.
  std::map<std::string, std::pair<WorkloadClass, double>> pattern_class;
  for (const PatternMatch& m : a.matches) pattern_class[m.name] = {m.klass, m.weight};
  std::ostringstream out;
  out << "digraph segments {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n";
  out << "  label=\"" << a.path << ": " << WorkloadClassName(a.klass) << " " << (a.training ? "training" : "inference")
      << "\";\n";
  for (size_t i = 0; i < groups.size(); ++i) {
    const SegmentGroup& g = groups[i];
    WorkloadClass best = WorkloadClass::kNone;
    double best_weight = -1;
    std::string pats;
    for (size_t p = 0; p < a.pattern_names.size() && p < 64; ++p) {
      if (!((g.head->patterns >> p) & 1)) continue;
      pats += (pats.empty() ? "" : "\\n") + a.pattern_names[p];
      auto it = pattern_class.find(a.pattern_names[p]);
      if (it != pattern_class.end() && it->second.first != WorkloadClass::kNone && it->second.second > best_weight) {
        best = it->second.first;
        best_weight = it->second.second;
      }
    }
    const size_t n = g.last - g.first + 1;
    out << "  g" << i << " [label=\"" << Range(g) << (n > 1 ? " (x" + std::to_string(n) + ")" : "") << "\\n"
        << g.head->phase << ", " << g.head->ops << " ops" << (pats.empty() ? "" : "\\n" + pats) << "\", fillcolor=\""
        << ClassColor(best) << "\"" << (pats.empty() ? "" : ", penwidth=2") << "];\n";
  }
  std::map<std::pair<size_t, size_t>, uint64_t> edges;
  for (const SegmentEdge& e : a.edges) {
    if (e.from >= group_of.size() || e.to >= group_of.size()) continue;
    size_t f = group_of[e.from], t = group_of[e.to];
    if (f != t) edges[{f, t}] += e.bytes;
  }
  for (const auto& [ft, bytes] : edges)
    out << "  g" << ft.first << " -> g" << ft.second << " [label=\"" << FormatBytes(bytes) << "\"];\n";
  out << "}\n";
  return out.str();
}

}  // namespace genie::analyzer

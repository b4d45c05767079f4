#include "traces/trace_dump.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "common/json_writer.h"

namespace genie::traces {
namespace {

std::string FormatDouble(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Canonical value names: per stream, in order of definition.
class Namer {
 public:
  std::string Define(uint32_t stream, ValueId id) {
    auto& m = names_[stream];
    auto it = m.emplace(id, m.size()).first;
    return "%" + std::to_string(it->second);
  }
  std::string Name(uint32_t stream, ValueId id) const {
    auto s = names_.find(stream);
    if (s != names_.end()) {
      auto it = s->second.find(id);
      if (it != s->second.end()) return "%" + std::to_string(it->second);
    }
    return "%undefined" + std::to_string(id);
  }

 private:
  std::map<uint32_t, std::map<ValueId, uint64_t>> names_;
};

class TextDumper {
 public:
  TextDumper(const StringTable& strings, std::ostream& out) : strings_(strings), out_(out) {}

  std::string ArgText(const Arg& a, uint32_t stream) const {
    switch (a.kind) {
      case Arg::Kind::kNone: return "None";
      case Arg::Kind::kBool: return a.i ? "True" : "False";
      case Arg::Kind::kInt: return std::to_string(a.i);
      case Arg::Kind::kFloat: return FormatDouble(a.f);
      case Arg::Kind::kString: return "'" + strings_.Get(static_cast<StringId>(a.i)) + "'";
      case Arg::Kind::kDevice:
      case Arg::Kind::kLayout:
      case Arg::Kind::kMemoryFormat: return strings_.Get(static_cast<StringId>(a.i));
      case Arg::Kind::kDType: return DTypeName(static_cast<DType>(a.i));
      case Arg::Kind::kTensor: return namer_.Name(stream, a.tensor);
      case Arg::Kind::kList: {
        std::string s = "[";
        for (size_t i = 0; i < a.list.size(); ++i) s += (i ? ", " : "") + ArgText(a.list[i], stream);
        return s + "]";
      }
    }
    return "?";
  }

  std::string MetaText(const TensorMeta& m, ValueId own, uint32_t stream) const {
    std::string s = DTypeName(m.dtype);
    s += "[";
    for (size_t i = 0; i < m.sizes.size(); ++i) s += (i ? "," : "") + std::to_string(m.sizes[i]);
    s += "]";
    if (!m.contiguous()) {
      s += "{";
      for (size_t i = 0; i < m.strides.size(); ++i) s += (i ? "," : "") + std::to_string(m.strides[i]);
      s += "}";
    }
    if (m.storage_offset != 0) s += "+" + std::to_string(m.storage_offset);
    if (m.storage != own) s += " alias " + namer_.Name(stream, m.storage);
    return s;
  }

  void Segment(const traces::Segment& seg) {
    char fp[24];
    std::snprintf(fp, sizeof(fp), "%016llx", static_cast<unsigned long long>(seg.fingerprint));
    out_ << "segment " << seg.index << " stream " << seg.stream << " fingerprint " << fp << " ops " << seg.num_ops()
         << "\n";
    for (const auto& step : seg.steps) {
      if (step.kind == Step::Kind::kInput) {
        const Input& in = step.input;
        std::string meta = MetaText(in.meta, in.id, seg.stream);
        out_ << "  " << namer_.Define(seg.stream, in.id) << " = input " << InputKindName(in.kind) << " " << meta;
        if (in.payload) out_ << " payload " << in.payload->Hex(16);
        out_ << "\n";
        continue;
      }
      const Op& op = step.op;
      std::string lhs, types;
      for (size_t i = 0; i < op.outputs.size(); ++i) {
        const Output& o = op.outputs[i];
        if (i) {
          lhs += ", ";
          types += ", ";
        }
        if (o.is_tensor) {
          types += MetaText(o.meta, o.id, seg.stream);
          if (o.payload) types += " payload " + o.payload->Hex(16);
          lhs += namer_.Define(seg.stream, o.id);
        } else {
          lhs += "scalar";
          types += ArgText(o.scalar, seg.stream);
        }
      }
      out_ << "  ";
      if (!lhs.empty()) out_ << lhs << " = ";
      out_ << strings_.Get(op.schema) << "(";
      bool first = true;
      for (const auto& a : op.args) {
        out_ << (first ? "" : ", ") << ArgText(a, seg.stream);
        first = false;
      }
      for (const auto& [k, a] : op.kwargs) {
        out_ << (first ? "" : ", ") << strings_.Get(k) << "=" << ArgText(a, seg.stream);
        first = false;
      }
      out_ << ")";
      if (!types.empty()) out_ << " : " << types;
      const std::string& module = strings_.Get(op.module);
      out_ << "  # " << (module.empty() ? "-" : module) << " " << PhaseName(op.phase);
      if (op.flags & Op::kRandom) out_ << " random";
      out_ << "\n";
    }
    for (const auto& m : seg.materialized) {
      out_ << "  materialize " << namer_.Name(seg.stream, m.id) << " " << HowName(m.how);
      if (m.payload) out_ << " payload " << m.payload->Hex(16);
      out_ << "\n";
    }
  }

 private:
  const StringTable& strings_;
  std::ostream& out_;
  Namer namer_;
};

class JsonDumper {
 public:
  JsonDumper(const StringTable& strings) : strings_(strings) {}

  void ArgJson(JsonWriter& w, const Arg& a, uint32_t stream) {
    switch (a.kind) {
      case Arg::Kind::kNone: w.Null(); return;
      case Arg::Kind::kBool: w.Bool(a.i != 0); return;
      case Arg::Kind::kInt: w.Int(a.i); return;
      case Arg::Kind::kFloat: w.Double(a.f); return;
      case Arg::Kind::kTensor: w.BeginObject().Key("tensor").String(namer_.Name(stream, a.tensor)).EndObject(); return;
      case Arg::Kind::kList:
        w.BeginArray();
        for (const auto& item : a.list) ArgJson(w, item, stream);
        w.EndArray();
        return;
      case Arg::Kind::kDType: w.BeginObject().Key("dtype").String(DTypeName(static_cast<DType>(a.i))).EndObject(); return;
      case Arg::Kind::kString: w.String(strings_.Get(static_cast<StringId>(a.i))); return;
      case Arg::Kind::kDevice: w.BeginObject().Key("device").String(strings_.Get(static_cast<StringId>(a.i))).EndObject(); return;
      case Arg::Kind::kLayout: w.BeginObject().Key("layout").String(strings_.Get(static_cast<StringId>(a.i))).EndObject(); return;
      case Arg::Kind::kMemoryFormat:
        w.BeginObject().Key("memory_format").String(strings_.Get(static_cast<StringId>(a.i))).EndObject();
        return;
    }
  }

  void MetaJson(JsonWriter& w, const TensorMeta& m, ValueId own, uint32_t stream) {
    w.Key("dtype").String(DTypeName(m.dtype));
    w.Key("shape").BeginArray();
    for (int64_t v : m.sizes) w.Int(v);
    w.EndArray();
    w.Key("strides").BeginArray();
    for (int64_t v : m.strides) w.Int(v);
    w.EndArray();
    w.Key("storage_offset").Int(m.storage_offset);
    if (m.storage != own) w.Key("alias").String(namer_.Name(stream, m.storage));
  }

  std::string Segment(const traces::Segment& seg) {
    JsonWriter w;
    char fp[24];
    std::snprintf(fp, sizeof(fp), "%016llx", static_cast<unsigned long long>(seg.fingerprint));
    w.BeginObject().Key("index").Uint(seg.index).Key("stream").Uint(seg.stream).Key("fingerprint").String(fp);
    w.Key("steps").BeginArray();
    for (const auto& step : seg.steps) {
      w.BeginObject();
      if (step.kind == Step::Kind::kInput) {
        const Input& in = step.input;
        w.Key("input").String(namer_.Define(seg.stream, in.id)).Key("kind").String(InputKindName(in.kind));
        MetaJson(w, in.meta, in.id, seg.stream);
        if (in.payload) w.Key("payload").String(in.payload->Hex());
        w.EndObject();
        continue;
      }
      const Op& op = step.op;
      w.Key("op").String(strings_.Get(op.schema));
      w.Key("args").BeginArray();
      for (const auto& a : op.args) ArgJson(w, a, seg.stream);
      w.EndArray();
      w.Key("kwargs").BeginObject();
      for (const auto& [k, a] : op.kwargs) {
        w.Key(strings_.Get(k));
        ArgJson(w, a, seg.stream);
      }
      w.EndObject();
      w.Key("outputs").BeginArray();
      for (const auto& o : op.outputs) {
        w.BeginObject();
        if (o.is_tensor) {
          w.Key("value").String(namer_.Define(seg.stream, o.id));
          MetaJson(w, o.meta, o.id, seg.stream);
          if (o.payload) w.Key("payload").String(o.payload->Hex());
        } else {
          w.Key("scalar");
          ArgJson(w, o.scalar, seg.stream);
        }
        w.EndObject();
      }
      w.EndArray();
      w.Key("module").String(strings_.Get(op.module));
      w.Key("phase").String(PhaseName(op.phase));
      w.Key("random").Bool(op.flags & Op::kRandom);
      w.EndObject();
    }
    w.EndArray();
    w.Key("materialized").BeginArray();
    for (const auto& m : seg.materialized) {
      w.BeginObject().Key("value").String(namer_.Name(seg.stream, m.id)).Key("how").String(HowName(m.how));
      if (m.payload) w.Key("payload").String(m.payload->Hex());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return w.str();
  }

 private:
  const StringTable& strings_;
  Namer namer_;
};

}  // namespace

bool IsVolatileHeaderField(const std::string& key) { return key == "created" || key == "pid"; }

Status DumpTrace(TraceReader* reader, DumpFormat format, std::ostream& out) {
  const TraceHeader& h = reader->header();
  traces::Segment seg;
  if (format == DumpFormat::kText) {
    out << "genie trace format " << h.format_version << "\n";
    for (const auto& [k, v] : h.fields)
      if (!IsVolatileHeaderField(k)) out << k << ": " << v << "\n";
    TextDumper d(reader->strings(), out);
    while (true) {
      GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
      if (!more) break;
      d.Segment(seg);
    }
    const TraceFooter& f = *reader->footer();
    out << "end segments " << f.segments << " ops " << f.ops << " payloads " << f.payloads << " payload_bytes "
        << f.payload_bytes << " exit " << f.exit_status;
    if (f.truncated) out << " truncated: " << f.reason;
    out << "\n";
    return Status::OK();
  }
  JsonWriter w;
  w.BeginObject().Key("format_version").Uint(h.format_version).Key("header").BeginObject();
  for (const auto& [k, v] : h.fields)
    if (!IsVolatileHeaderField(k)) w.Key(k).String(v);
  w.EndObject();
  out << w.str() << ",\"segments\":[";
  JsonDumper d(reader->strings());
  bool first = true;
  while (true) {
    GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
    if (!more) break;
    out << (first ? "\n" : ",\n") << d.Segment(seg);
    first = false;
  }
  const TraceFooter& f = *reader->footer();
  JsonWriter e;
  e.BeginObject()
      .Key("segments").Uint(f.segments)
      .Key("ops").Uint(f.ops)
      .Key("payloads").Uint(f.payloads)
      .Key("payload_bytes").Uint(f.payload_bytes)
      .Key("exit_status").Int(f.exit_status)
      .Key("truncated").Bool(f.truncated)
      .Key("reason").String(f.reason)
      .EndObject();
  out << "\n],\"end\":" << e.str() << "}\n";
  return Status::OK();
}

}  // namespace genie::traces

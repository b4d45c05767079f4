#include "replayer/replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "common/json_writer.h"
#include "traces/segment_codec.h"
#include "traces/trace_reader.h"

namespace genie::replayer {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

float HalfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Element i of a contiguous buffer of `dtype`, as a double (complex: real and
// imaginary parts count as two elements).
double Element(traces::DType dtype, const char* p, size_t i) {
  switch (dtype) {
    case traces::DType::kBool: return p[i] != 0;
    case traces::DType::kUInt8: return static_cast<uint8_t>(p[i]);
    case traces::DType::kInt8: return static_cast<int8_t>(p[i]);
    case traces::DType::kInt16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); return v; }
    case traces::DType::kInt32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case traces::DType::kInt64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); return static_cast<double>(v); }
    case traces::DType::kFloat16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return HalfToFloat(v); }
    case traces::DType::kBFloat16: {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);
      uint32_t bits = static_cast<uint32_t>(v) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case traces::DType::kFloat32:
    case traces::DType::kComplex64: { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case traces::DType::kFloat64:
    case traces::DType::kComplex128: { double v; std::memcpy(&v, p + 8 * i, 8); return v; }
  }
  return 0;
}

size_t ElementBytes(traces::DType d) {
  if (d == traces::DType::kComplex64) return 4;
  if (d == traces::DType::kComplex128) return 8;
  return traces::DTypeSize(d);
}

struct LoadedTrace {
  std::vector<traces::Segment> segments;
  traces::StringTable strings;
  std::unordered_map<ContentHash, std::string, ContentHashHasher> payloads;
};

Result<LoadedTrace> Load(const std::string& path) {
  GENIE_ASSIGN_OR_RETURN(auto reader, traces::TraceReader::Open(path));
  LoadedTrace t;
  reader->set_payload_callback([&](const ContentHash& h, uint64_t total, uint64_t offset, std::string_view bytes) {
    std::string& p = t.payloads[h];
    if (offset == 0) p.reserve(total);
    if (p.size() != offset) return Status::Corruption("payload " + h.Hex(16) + " pieces out of order");
    p.append(bytes);
    return Status::OK();
  });
  traces::Segment seg;
  while (true) {
    GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
    if (!more) break;
    t.segments.push_back(std::move(seg));
  }
  for (const auto& s : reader->strings().all()) t.strings.Intern(s);
  return t;
}

class Timeline {
 public:
  void Span(const std::string& name, Clock::time_point start, Clock::time_point end, const std::string& runtime,
            const std::string& args_json = "") {
    JsonWriter w;
    w.BeginObject().Key("name").String(name).Key("ph").String("X").Key("pid").Int(1).Key("tid").String(runtime);
    w.Key("ts").Double(std::chrono::duration<double, std::micro>(start - origin_).count());
    w.Key("dur").Double(std::chrono::duration<double, std::micro>(end - start).count());
    w.EndObject();
    std::string e = w.str();
    if (!args_json.empty()) e = e.substr(0, e.size() - 1) + ",\"args\":" + args_json + "}";
    events_.push_back(e);
  }
  Status Write(const std::string& path) const {
    std::ofstream f(path);
    if (!f) return Status::IOError("cannot write " + path);
    f << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
    for (size_t i = 0; i < events_.size(); ++i) f << (i ? ",\n" : "") << events_[i];
    f << "\n]}\n";
    return f.good() ? Status::OK() : Status::IOError("cannot write " + path);
  }

 private:
  Clock::time_point origin_ = Clock::now();
  std::vector<std::string> events_;
};

void Verify(const traces::Segment& seg, const traces::Materialization& m, const traces::TensorMeta& meta,
            const std::string& recorded, const FetchedTensor& got, const ReplayOptions& opt, ReplayReport* r) {
  auto mismatch = [&](const std::string& what) {
    r->mismatches.push_back({seg.index, m.id, what});
  };
  ++r->verified;
  if (got.dtype != traces::DTypeName(meta.dtype) || got.sizes != meta.sizes) {
    mismatch("came back as " + got.dtype + " of another shape");
    return;
  }
  if (got.bytes.size() != recorded.size()) {
    mismatch("came back with " + std::to_string(got.bytes.size()) + " bytes, " + std::to_string(recorded.size()) +
             " were recorded");
    return;
  }
  size_t n = recorded.size() / ElementBytes(meta.dtype);
  bool exact = !traces::DTypeIsFloating(meta.dtype);
  double worst_abs = 0, worst_rel = 0;
  bool bad = false;
  for (size_t i = 0; i < n; ++i) {
    double want = Element(meta.dtype, recorded.data(), i);
    double have = Element(meta.dtype, got.bytes.data(), i);
    if (std::isnan(want) && std::isnan(have)) continue;
    double abs_err = std::fabs(have - want);
    double rel_err = want != 0 ? abs_err / std::fabs(want) : (abs_err > 0 ? INFINITY : 0);
    if (std::isnan(abs_err)) abs_err = rel_err = INFINITY;
    worst_abs = std::max(worst_abs, abs_err);
    if (abs_err > 0) worst_rel = std::max(worst_rel, rel_err);
    if (exact ? abs_err != 0 : abs_err > opt.atol + opt.rtol * std::fabs(want)) bad = true;
  }
  r->max_abs_error = std::max(r->max_abs_error, worst_abs);
  r->max_rel_error = std::max(r->max_rel_error, worst_rel);
  if (bad) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "differs: max abs error %.3g, max rel error %.3g", worst_abs, worst_rel);
    mismatch(buf);
  }
}

}  // namespace

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Result<ReplayReport> Replay(const std::string& path, RuntimeClient& client, const ReplayOptions& opt) {
  GENIE_ASSIGN_OR_RETURN(LoadedTrace trace, Load(path));
  ReplayReport r;
  Timeline timeline;
  const std::string tid = client.address();

  // The payloads the runtime needs: inputs and recorded random results.
  std::vector<ContentHash> needed;
  std::unordered_set<ContentHash, ContentHashHasher> seen;
  std::unordered_map<uint64_t, traces::TensorMeta> metas;
  for (const auto& seg : trace.segments) {
    r.ops += seg.num_ops();
    for (const auto& step : seg.steps) {
      if (step.kind == traces::Step::Kind::kInput) {
        metas[step.input.id] = step.input.meta;
        if (step.input.payload && seen.insert(*step.input.payload).second) needed.push_back(*step.input.payload);
        continue;
      }
      for (const auto& out : step.op.outputs) {
        if (!out.is_tensor) continue;
        metas[out.id] = out.meta;
        if (out.payload && seen.insert(*out.payload).second) needed.push_back(*out.payload);
      }
    }
  }
  r.segments = trace.segments.size();
  r.payloads = needed.size();

  auto t0 = Clock::now();
  GENIE_ASSIGN_OR_RETURN(std::vector<bool> present, client.QueryBlobs(needed));
  std::vector<std::pair<ContentHash, std::string_view>> uploads;
  for (size_t i = 0; i < needed.size(); ++i) {
    if (present[i]) {
      ++r.already_present;
      continue;
    }
    auto it = trace.payloads.find(needed[i]);
    if (it == trace.payloads.end())
      return Status::Corruption(path + ": payload " + needed[i].Hex(16) + " is named but not stored in the trace");
    uploads.emplace_back(needed[i], it->second);
    r.uploaded_bytes += it->second.size();
  }
  r.uploaded_blobs = uploads.size();
  std::function<void(uint64_t)> on_sent;
  if (opt.upload_progress) on_sent = [&](uint64_t sent) { opt.upload_progress(sent, r.uploaded_bytes); };
  GENIE_RETURN_IF_ERROR(client.PutBlobs(uploads, on_sent));
  auto t1 = Clock::now();
  r.upload_ms = Ms(t0, t1);
  timeline.Span("upload", t0, t1, tid, "{\"blobs\":" + std::to_string(uploads.size()) + ",\"bytes\":" +
                                           std::to_string(r.uploaded_bytes) + "}");

  std::vector<std::string> all_strings = trace.strings.all();
  bool strings_sent = false;
  uint64_t total = r.segments * static_cast<uint64_t>(opt.repeat), done = 0;
  for (int rep = 0; rep < opt.repeat; ++rep) {
    for (const auto& seg : trace.segments) {
      ByteWriter record;
      GENIE_RETURN_IF_ERROR(traces::EncodeSegment(seg, &record));
      std::vector<uint64_t> fetch;
      for (const auto& m : seg.materialized) fetch.push_back(m.id);
      auto s0 = Clock::now();
      auto reply = client.Execute(strings_sent ? std::vector<std::string>{} : all_strings, record.buffer(), fetch);
      auto s1 = Clock::now();
      if (!reply.ok()) return reply.status().WithContext("segment " + std::to_string(seg.index));
      strings_sent = true;
      r.segment_ms.push_back(Ms(s0, s1));
      r.runtime_ms.push_back(reply->message.execute_us() / 1e3);
      timeline.Span("execute", s0, s1, tid,
                    "{\"segment\":" + std::to_string(seg.index) + ",\"ops\":" + std::to_string(seg.num_ops()) +
                        ",\"runtime_ms\":" + std::to_string(reply->message.execute_us() / 1e3) + "}");
      if (reply->download_ms > 0)
        timeline.Span("download", s1 - std::chrono::microseconds(static_cast<int64_t>(reply->download_ms * 1000)), s1,
                      tid);
      for (size_t i = 0; i < seg.materialized.size(); ++i) {
        const auto& m = seg.materialized[i];
        if (!m.payload) {
          ++r.unverified;
          continue;
        }
        auto p = trace.payloads.find(*m.payload);
        auto meta = metas.find(m.id);
        if (p == trace.payloads.end() || meta == metas.end()) {
          ++r.unverified;
          continue;
        }
        Verify(seg, m, meta->second, p->second, reply->tensors[i], opt, &r);
      }
      if (opt.progress) opt.progress(++done, total);
    }
  }
  r.counters = client.counters();
  if (!opt.timeline.empty()) GENIE_RETURN_IF_ERROR(timeline.Write(opt.timeline));
  return r;
}

}  // namespace genie::replayer

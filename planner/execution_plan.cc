#include "planner/execution_plan.h"

#include <sys/random.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "common/content_hash.h"
#include "common/human_format.h"
#include "common/json_writer.h"
#include "common/utc_time.h"

namespace genie::planner {
namespace {

using analyzer::Analysis;
using analyzer::Branch;
using analyzer::WorkloadClass;

// Weights go up once in batches of at most this size (one pipelined upload each).
constexpr uint64_t kMaxBatchBytes = 64ull << 20;

std::vector<Placement> Devices(const PoolShape& pool) {
  std::vector<Placement> out;
  for (uint32_t r = 0; r < pool.runtimes.size(); ++r)
    for (const std::string& d : pool.runtimes[r].devices) out.push_back({r, pool.runtimes[r].address, d});
  return out;
}

bool IsCuda(const Placement& p) { return p.device.rfind("cuda", 0) == 0; }

class Builder {
 public:
  Builder(const Analysis& a, const PoolShape& pool, ExecutionPlan* plan)
      : a_(a), devices_(Devices(pool)), plan_(plan) {}

  uint32_t AddFragment(const std::string& name, const std::string& role, std::vector<std::string> modules,
                       const Placement& where, double flops, uint64_t parameter_bytes) {
    Fragment f;
    f.index = static_cast<uint32_t>(plan_->fragments.size());
    f.name = name;
    f.role = role;
    f.modules = std::move(modules);
    f.placement = where;
    f.flops = flops;
    f.parameter_bytes = parameter_bytes;
    plan_->fragments.push_back(f);
    return f.index;
  }

  void Resident(const std::string& kind, const std::string& what, uint64_t bytes, uint32_t fragment) {
    if (bytes) plan_->residency.push_back({kind, what, bytes, fragment});
  }

  // The weights of a fragment go up once, in batches of at most kMaxBatchBytes.
  void UploadOnce(uint32_t fragment, uint64_t bytes, uint64_t tensors) {
    if (bytes == 0) return;
    uint64_t batches = (bytes + kMaxBatchBytes - 1) / kMaxBatchBytes;
    for (uint64_t b = 0; b < batches; ++b) {
      TransferBatch t;
      t.index = static_cast<uint32_t>(plan_->transfers.size());
      t.when = "once, before the first segment";
      t.direction = "up";
      t.bytes = std::min(kMaxBatchBytes, bytes - b * kMaxBatchBytes);
      t.tensors = (tensors + batches - 1) / batches;
      t.fragment = fragment;
      plan_->transfers.push_back(t);
    }
  }

  // What every segment moves with residency: its new inputs up, what it materializes down.
  void PerSegment(uint32_t fragment) {
    uint64_t up = 0, down = 0, n = 0;
    for (size_t i = 1; i < a_.segment_stats.size(); ++i) {
      up += a_.segment_stats[i].up_resident;
      down += a_.segment_stats[i].down_resident;
      ++n;
    }
    if (n == 0) return;
    plan_->transfers.push_back({static_cast<uint32_t>(plan_->transfers.size()), "each segment (mean)", "up", up / n, 0, fragment});
    plan_->transfers.push_back({static_cast<uint32_t>(plan_->transfers.size()), "each segment (mean)", "down", down / n, 0, fragment});
  }

  uint64_t OptimizerStateBytes() const {
    if (!a_.training) return 0;
    if (a_.optimizer == "adam") return 2 * a_.parameter_bytes;  // exp_avg, exp_avg_sq
    if (a_.optimizer == "sgd") return a_.parameter_bytes;       // momentum buffers
    return 0;
  }

  std::string OptimizerWhat() const {
    return a_.optimizer == "adam" ? "Adam moments (2x parameters)" : "SGD momentum buffers (1x parameters)";
  }

  void Llm() {
    const Placement& d = devices_[0];
    auto phase = [&](const char* p) {
      auto it = a_.phase_ops.find(p);
      return it == a_.phase_ops.end() ? 0 : it->second;
    };
    uint32_t main;
    if (phase("decode")) {
      if (phase("prefill")) AddFragment("prefill", "prefill", {}, d, 0, 0);
      main = AddFragment("decode", "decode", {}, d, a_.flops, a_.parameter_bytes);
      plan_->strategy = "LLM: prefill and decode on one device, the KV cache resident beside the decode that uses it";
    } else {
      main = AddFragment("forward", a_.training ? "step" : "forward", {}, d, a_.flops, a_.parameter_bytes);
      plan_->strategy = "LLM without decode phases: one fragment on one device, weights resident";
    }
    Resident("weights", "all parameters", a_.parameter_bytes, main);
    Resident("kv_cache", "keys and values carried across decode segments", a_.kv_cache_bytes, main);
    Resident("optimizer_state", OptimizerWhat(), OptimizerStateBytes(), main);
    UploadOnce(main, a_.parameter_bytes, a_.parameters);
    PerSegment(main);
    if (IsCuda(d) && phase("decode")) plan_->feature_flags["cuda_graphs"] = "decode";
  }

  void Vision() {
    std::vector<const Branch*> stages_of;
    for (const Branch& b : a_.branches) stages_of.push_back(&b);
    const size_t k = std::min(devices_.size(), stages_of.size());
    if (k < 2) {
      Single("vision: one device, weights resident");
      return;
    }
    // Contiguous stages in program order, cut where the running FLOPs pass each stage's share.
    double total = 0;
    for (const Branch* b : stages_of) total += b->flops;
    std::vector<std::vector<const Branch*>> stages(k);
    double running = 0;
    size_t s = 0;
    for (size_t i = 0; i < stages_of.size(); ++i) {
      size_t left = stages_of.size() - i;
      if (s + 1 < k && !stages[s].empty() && (running >= total * static_cast<double>(s + 1) / static_cast<double>(k) ||
                                              left <= k - s - 1))
        ++s;
      stages[s].push_back(stages_of[i]);
      running += stages_of[i]->flops;
    }
    for (size_t i = 0; i < k; ++i) {
      std::vector<std::string> modules;
      double flops = 0;
      uint64_t params = 0;
      for (const Branch* b : stages[i]) {
        modules.push_back(b->name);
        flops += b->flops;
        params += b->parameter_bytes;
      }
      uint32_t f = AddFragment("stage " + std::to_string(i), "stage", modules, devices_[i], flops, params);
      Resident("weights", "parameters of stage " + std::to_string(i), params, f);
      UploadOnce(f, params, 0);
    }
    PerSegment(0);
    plan_->feature_flags["pipeline"] = std::to_string(k) + " stages";
    plan_->strategy = "vision: " + std::to_string(k) + " pipeline stages across devices, balanced by FLOPs";
  }

  void Recsys() {
    std::vector<analyzer::EmbeddingTable> tables = a_.embedding_tables;
    std::sort(tables.begin(), tables.end(), [](const auto& x, const auto& y) { return x.bytes > y.bytes; });
    std::vector<uint64_t> load(devices_.size(), 0);
    uint64_t table_bytes = 0;
    for (const auto& t : tables) {
      size_t d = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      load[d] += t.bytes;
      table_bytes += t.bytes;
      uint32_t f = AddFragment("table " + t.module, "table", {t.module}, devices_[d], 0, t.bytes);
      Resident("embedding_table", t.module, t.bytes, f);
      UploadOnce(f, t.bytes, 1);
    }
    uint64_t dense = a_.parameter_bytes > table_bytes ? a_.parameter_bytes - table_bytes : 0;
    uint32_t f = AddFragment("dense", "dense", {}, devices_[0], a_.flops, dense);
    Resident("weights", "dense layers", dense, f);
    Resident("optimizer_state", OptimizerWhat(), OptimizerStateBytes(), f);
    UploadOnce(f, dense, 0);
    PerSegment(f);
    plan_->strategy = "recsys: " + std::to_string(tables.size()) + " embedding tables placed largest first on the least loaded of " +
                      std::to_string(devices_.size()) + " devices, dense layers on the first";
  }

  void Multimodal() {
    std::vector<const Branch*> encoders;
    for (const Branch& b : a_.branches)
      if (b.modality != "none") encoders.push_back(&b);
    if (encoders.empty()) {
      Single("multimodal without distinct encoders: one device");
      return;
    }
    size_t largest = 0;
    uint64_t encoder_params = 0;
    for (size_t i = 0; i < encoders.size(); ++i) {
      const Branch& b = *encoders[i];
      const Placement& d = devices_[i % devices_.size()];
      uint32_t f = AddFragment("encoder " + b.name, "encoder", {b.name}, d, b.flops, b.parameter_bytes);
      Resident("weights", "parameters of " + b.name + " (" + b.modality + ")", b.parameter_bytes, f);
      UploadOnce(f, b.parameter_bytes, 0);
      encoder_params += b.parameter_bytes;
      if (b.flops > encoders[largest]->flops) largest = i;
    }
    uint64_t rest = a_.parameter_bytes > encoder_params ? a_.parameter_bytes - encoder_params : 0;
    uint32_t fusion = AddFragment("fusion", "fusion", {}, devices_[largest % devices_.size()], 0, rest);
    Resident("weights", "fusion and heads", rest, fusion);
    Resident("optimizer_state", OptimizerWhat(), OptimizerStateBytes(), fusion);
    UploadOnce(fusion, rest, 0);
    PerSegment(fusion);
    plan_->strategy = "multimodal: " + std::to_string(encoders.size()) + " encoders in parallel on " +
                      std::to_string(std::min(encoders.size(), devices_.size())) +
                      " devices, fused late beside the largest";
  }

  void Single(const std::string& strategy) {
    uint32_t f = AddFragment(a_.training ? "step" : "forward", a_.training ? "step" : "forward", {}, devices_[0], a_.flops,
                             a_.parameter_bytes);
    Resident("weights", "all parameters", a_.parameter_bytes, f);
    Resident("optimizer_state", OptimizerWhat(), OptimizerStateBytes(), f);
    UploadOnce(f, a_.parameter_bytes, a_.parameters);
    PerSegment(f);
    plan_->strategy = strategy;
  }

  bool HasDevices() const { return !devices_.empty(); }
  const std::vector<Placement>& devices() const { return devices_; }

 private:
  const Analysis& a_;
  std::vector<Placement> devices_;
  ExecutionPlan* plan_;
};

std::string Hex16(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string TraceKey(const std::vector<uint64_t>& fingerprints) {
  std::vector<uint64_t> sorted = fingerprints;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string bytes;
  for (uint64_t f : sorted)
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((f >> (8 * i)) & 0xff));
  return ContentHash::Of(bytes.data(), bytes.size()).Hex(32);
}

std::string NewPlanId() {
  uint8_t b[16];
  size_t got = 0;
  while (got < sizeof(b)) {
    ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  char out[40];
  std::snprintf(out, sizeof(out), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

Result<ExecutionPlan> MakePlan(const Analysis& a, const PoolShape& pool, WorkloadClass klass) {
  ExecutionPlan plan;
  plan.id = NewPlanId();
  plan.pool = pool.name;
  plan.trace_path = a.path;
  plan.fingerprints = a.fingerprints;
  plan.trace_key = TraceKey(a.fingerprints);
  plan.class_overridden = klass != WorkloadClass::kNone;
  plan.klass = plan.class_overridden ? klass : a.klass;
  plan.confidence = a.confidence;
  plan.training = a.training;
  plan.created = UtcNow();
  Builder b(a, pool, &plan);
  if (!b.HasDevices()) return Status::InvalidArgument("pool '" + pool.name + "' has no devices to place work on");
  switch (plan.klass) {
    case WorkloadClass::kLlm: b.Llm(); break;
    case WorkloadClass::kVision: b.Vision(); break;
    case WorkloadClass::kRecsys: b.Recsys(); break;
    case WorkloadClass::kMultimodal: b.Multimodal(); break;
    case WorkloadClass::kDense:
    case WorkloadClass::kNone: b.Single("one device, weights resident"); break;
  }
  bool cuda = false;
  for (const Fragment& f : plan.fragments) cuda |= IsCuda(f.placement);
  plan.feature_flags["checksums"] = "sha256";       // payloads are content-addressed and verified
  plan.feature_flags["compression"] = "off";        // float tensors barely compress; the wire stays raw
  plan.feature_flags["resident_weights"] = "on";
  plan.feature_flags["pinned_memory"] = cuda ? "on" : "off";
  if (!plan.feature_flags.count("cuda_graphs")) plan.feature_flags["cuda_graphs"] = "off";
  return plan;
}

double AverageStartupBatchBytes(const ExecutionPlan& plan) {
  uint64_t bytes = 0, n = 0;
  for (const TransferBatch& t : plan.transfers)
    if (t.when.rfind("once", 0) == 0) {
      bytes += t.bytes;
      ++n;
    }
  return n ? static_cast<double>(bytes) / static_cast<double>(n) : 0;
}

std::string PlanText(const ExecutionPlan& p) {
  std::ostringstream out;
  out << "plan       " << p.id << "\n";
  out << "pool       " << p.pool << "\n";
  out << "trace      " << p.trace_path << " (key " << p.trace_key << ", " << p.fingerprints.size() << " fingerprints)\n";
  out << "workload   " << analyzer::WorkloadClassName(p.klass) << " " << (p.training ? "training" : "inference");
  if (p.class_overridden) out << " (chosen with --pattern)";
  else out << " (confidence " << static_cast<int>(p.confidence * 100 + 0.5) << "%)";
  out << "\n";
  out << "strategy   " << p.strategy << "\n";
  out << "created    " << p.created;
  if (!p.last_used.empty()) out << "; last used " << p.last_used << " (" << p.uses << " runs)";
  out << "\n";
  out << "fragments:\n";
  for (const Fragment& f : p.fragments) {
    out << "  " << f.index << " " << f.name << " [" << f.role << "] on runtime " << f.placement.runtime << " ("
        << f.placement.address << ") " << f.placement.device;
    if (f.parameter_bytes) out << ", " << FormatBytes(f.parameter_bytes) << " of parameters";
    if (!f.modules.empty() && !(f.modules.size() == 1 && f.name.find(f.modules[0]) != std::string::npos)) {
      out << ", modules ";
      for (size_t i = 0; i < f.modules.size(); ++i) out << (i ? ", " : "") << f.modules[i];
    }
    out << "\n";
  }
  if (!p.residency.empty()) {
    out << "resident:\n";
    for (const Residency& r : p.residency)
      out << "  " << r.kind << " " << FormatBytes(r.bytes) << " on fragment " << r.fragment << ": " << r.what << "\n";
  }
  if (!p.transfers.empty()) {
    out << "transfers:\n";
    for (const TransferBatch& t : p.transfers)
      out << "  " << t.direction << " " << FormatBytes(t.bytes) << " " << t.when << " (fragment " << t.fragment << ")\n";
    double avg = AverageStartupBatchBytes(p);
    if (avg > 0) out << "  average batch sent once: " << FormatBytes(static_cast<uint64_t>(avg)) << "\n";
  }
  out << "flags     ";
  for (const auto& [k, v] : p.feature_flags) out << " " << k << "=" << v;
  out << "\n";
  return out.str();
}

std::string PlanJson(const ExecutionPlan& p) {
  JsonWriter w;
  w.BeginObject().Key("id").String(p.id).Key("pool").String(p.pool).Key("trace_key").String(p.trace_key);
  w.Key("trace").String(p.trace_path).Key("class").String(analyzer::WorkloadClassName(p.klass));
  w.Key("class_overridden").Bool(p.class_overridden).Key("confidence").Double(p.confidence);
  w.Key("training").Bool(p.training).Key("strategy").String(p.strategy).Key("created").String(p.created);
  w.Key("last_used").String(p.last_used).Key("uses").Uint(p.uses);
  w.Key("fingerprints").BeginArray();
  for (uint64_t f : p.fingerprints) w.String(Hex16(f));
  w.EndArray();
  w.Key("fragments").BeginArray();
  for (const Fragment& f : p.fragments) {
    w.BeginObject().Key("index").Uint(f.index).Key("name").String(f.name).Key("role").String(f.role);
    w.Key("modules").BeginArray();
    for (const auto& m : f.modules) w.String(m);
    w.EndArray();
    w.Key("runtime").Uint(f.placement.runtime).Key("address").String(f.placement.address);
    w.Key("device").String(f.placement.device).Key("flops").Double(f.flops).Key("parameter_bytes").Uint(f.parameter_bytes);
    w.EndObject();
  }
  w.EndArray();
  w.Key("residency").BeginArray();
  for (const Residency& r : p.residency)
    w.BeginObject().Key("kind").String(r.kind).Key("what").String(r.what).Key("bytes").Uint(r.bytes)
        .Key("fragment").Uint(r.fragment).EndObject();
  w.EndArray();
  w.Key("transfers").BeginArray();
  for (const TransferBatch& t : p.transfers)
    w.BeginObject().Key("index").Uint(t.index).Key("when").String(t.when).Key("direction").String(t.direction)
        .Key("bytes").Uint(t.bytes).Key("tensors").Uint(t.tensors).Key("fragment").Uint(t.fragment).EndObject();
  w.EndArray();
  w.Key("feature_flags").BeginObject();
  for (const auto& [k, v] : p.feature_flags) w.Key(k).String(v);
  w.EndObject().EndObject();
  return w.str();
}

}  // namespace genie::planner

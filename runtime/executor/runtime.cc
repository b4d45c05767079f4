// The only translation unit of Genie that includes torch headers.
#include "runtime/executor/runtime.h"

#include "runtime/executor/host_arena.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>
#include <torch/version.h>
#ifdef GENIE_WITH_CUDA_GRAPHS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <list>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

// What a live program's torch.manual_seed(seed) sends: the session's random
// ops draw from a generator of its own, seeded there (Session::generator).
// Defined so that segments naming it pass the checks that every op exists;
// it has no kernel, RunOp takes it.
TORCH_LIBRARY_FRAGMENT(genie, m) { m.def("manual_seed(int seed) -> ()"); }

namespace genie::runtime {
namespace {

using traces::Arg;
using traces::DType;

constexpr char kSeedOp[] = "genie::manual_seed";

constexpr size_t kHashHere = 64 << 10;  // uploads up to this size are hashed on the connection's thread (PutBlob)
constexpr size_t kReusedBytes = 1u << 20;    // transient uploads from this size reuse freed buffers (CPU, no arena)
constexpr size_t kReusedLimit = 512u << 20;  // free buffers kept for reuse, at most

at::ScalarType ToScalarType(DType d) {
  switch (d) {
    case DType::kBool: return at::kBool;
    case DType::kUInt8: return at::kByte;
    case DType::kInt8: return at::kChar;
    case DType::kInt16: return at::kShort;
    case DType::kInt32: return at::kInt;
    case DType::kInt64: return at::kLong;
    case DType::kFloat16: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
    case DType::kFloat32: return at::kFloat;
    case DType::kFloat64: return at::kDouble;
    case DType::kComplex64: return at::kComplexFloat;
    case DType::kComplex128: return at::kComplexDouble;
  }
  return at::kFloat;
}

Result<DType> FromScalarType(at::ScalarType s) {
  for (int i = 0; i < traces::kNumDTypes; ++i)
    if (ToScalarType(static_cast<DType>(i)) == s) return static_cast<DType>(i);
  return Status::Unsupported(std::string("dtype ") + c10::toString(s) + " has no wire name");
}

Result<c10::MemoryFormat> ToMemoryFormat(const std::string& s) {
  if (s == "contiguous_format") return c10::MemoryFormat::Contiguous;
  if (s == "preserve_format") return c10::MemoryFormat::Preserve;
  if (s == "channels_last") return c10::MemoryFormat::ChannelsLast;
  if (s == "channels_last_3d") return c10::MemoryFormat::ChannelsLast3d;
  return Status::Unsupported("memory format '" + s + "'");
}

// The argument `op` gives for schema parameter `p`, the `i`th: positional,
// else by name; null when it gives none (the default applies).
const Arg* GivenArg(const traces::Op& op, const c10::Argument& p, size_t i, const traces::StringTable& strings) {
  if (i < op.args.size()) return &op.args[i];
  for (const auto& [name, a] : op.kwargs)
    if (strings.Get(name) == p.name()) return &a;
  return nullptr;
}

// Whether `ok` holds for every argument `op` gives to a parameter its
// schema marks written (in place, `out=`), the items of a list one by one
// (None items left out).
template <typename Ok>
bool AllWritten(const traces::Op& op, const std::vector<c10::Argument>& params, const traces::StringTable& strings,
                Ok ok) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].alias_info() || !params[i].alias_info()->isWrite()) continue;
    const Arg* given = GivenArg(op, params[i], i, strings);
    if (!given) continue;
    if (given->kind != Arg::Kind::kList) {
      if (!ok(*given)) return false;
      continue;
    }
    for (const auto& item : given->list)
      if (item.kind != Arg::Kind::kNone && !ok(item)) return false;
  }
  return true;
}

Result<c10::Layout> ToLayout(const std::string& s) {
  if (s == "strided") return c10::Layout::Strided;
  return Status::Unsupported("layout '" + s + "' (only strided tensors run remotely)");
}

struct Blob {
  at::Tensor data;  // uint8, 1-D, on the runtime's device
  std::shared_future<bool> verified;  // the hash check
  uint64_t bytes = 0;
  int pins = 0;
  std::list<ContentHash>::iterator lru;

  // Its hash check has run and failed: the bytes are not the ones named.
  bool damaged() const {
    return verified.valid() && verified.wait_for(std::chrono::seconds(0)) == std::future_status::ready &&
           !verified.get();
  }
};

#ifdef GENIE_WITH_CUDA_GRAPHS
// A segment fingerprint's CUDA graph (see TorchRuntime::RunGraph).
struct CachedGraph {
  int sightings = 0;
  bool failed = false;                  // the segment cannot be captured: it always runs op by op
  std::vector<const void*> last_data;   // the externals' data at the latest op-by-op run
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  std::vector<at::Tensor> externals;    // what the graph reads for each value from before the segment
  std::vector<bool> copied;             // refilled before each replay; else it must still be the same tensor
  std::vector<at::Tensor> inputs;       // buffers for the segment's uploaded inputs, refilled before each replay
  std::vector<at::Tensor> outputs;      // every tensor the segment defines, in definition order
};
#endif

// A transient payload of twice this or more goes to a CUDA device in pieces
// of this size as they arrive (Runtime::ReceiveTransient).
constexpr int64_t kDevicePieceBytes = 1 << 20;

// A transient payload (Runtime::PutTransient): its bytes until an input takes them.
struct Transient {
  at::Tensor data;  // uint8, 1-D, on the runtime's device
  uint64_t bytes = 0;
};

// A small payload held for one session (Runtime::HoldPayload): its bytes while any hold lasts.
struct Held {
  at::Tensor data;  // uint8, 1-D, on the runtime's device
  uint64_t bytes = 0;
  int holds = 0;
};

struct Session {
  std::unordered_map<uint64_t, at::Tensor> values;
  std::unordered_set<ContentHash, ContentHashHasher> pinned;              // guarded by blob_mu_
  std::unordered_map<ContentHash, Transient, ContentHashHasher> transient;  // guarded by blob_mu_
  std::unordered_map<ContentHash, Held, ContentHashHasher> held;            // guarded by blob_mu_
  std::vector<c10::optional<c10::OperatorHandle>> ops;  // by the session's string id
  // What the session's random ops draw from: its own, so that a program's
  // draws do not depend on the other sessions of the runtime and repeat from
  // run to run; seeded by the program's torch.manual_seed (kSeedOp), else
  // with torch's default seed, as a fresh process's generators are.
  c10::optional<at::Generator> generator;
#ifdef GENIE_WITH_CUDA_GRAPHS
  std::unordered_map<uint64_t, CachedGraph> graphs;     // by segment fingerprint
#endif
};

#ifdef GENIE_WITH_CUDA_GRAPHS
// What a replayed graph needs to know of a segment: the values it reads from
// before it (in first-use order), the values it defines, its uploaded inputs.
struct GraphPlan {
  std::vector<traces::ValueId> externals;
  std::vector<traces::ValueId> defined;
  std::vector<const traces::Input*> inputs;
  bool eligible = true;
};

constexpr int kCaptureAt = 3;            // a fingerprint's third sighting is captured (two op-by-op runs warm up)
constexpr size_t kGraphsPerSession = 64;
#endif

class TorchRuntime final : public Runtime {
 public:
  TorchRuntime(c10::Device device, uint64_t max_memory)
      : device_(device), max_memory_(max_memory), arena_(std::make_shared<HostArena>(max_memory)) {}

  std::string device() const override { return device_.str(); }

  BlobBuffer AllocateBlob(size_t n) override {
    if (char* p = arena_->Allocate(n)) {
      std::shared_ptr<HostArena> arena = arena_;  // outlives the blob's last tensor
      return {std::shared_ptr<char[]>(p, [arena](char* q) { arena->Free(q); }), n};
    }
    return BlobBuffer::Allocate(n);
  }
  BlobBuffer AllocateTransient(size_t n) override {
    if (!device_.is_cuda() && max_memory_ == 0 && n >= kReusedBytes) {
      // Without an arena: the buffer comes back for the next upload of its size once its value is freed.
      if (std::shared_ptr<char[]> p = reused_->Take(n)) return {std::move(p), n};
    }
    if (!device_.is_cuda() || n == 0) return AllocateBlob(n);
    at::Tensor pinned;
    try {
      pinned = at::empty({static_cast<int64_t>(n)}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    } catch (const std::exception&) {
      return AllocateBlob(n);  // no page-locked memory left: pageable, whose copy to the device is slower
    }
    char* p = static_cast<char*>(pinned.data_ptr());
    // Back to the pinned cache once the device copy (synchronous) has read it.
    return {std::shared_ptr<char[]>(p, [pinned](char*) mutable { pinned.reset(); }), n};
  }
  std::string torch_version() const override { return TORCH_VERSION; }

  bool HasBlob(uint64_t session, const ContentHash& h) override {
    Session* s = FindSession(session);
    std::lock_guard<std::mutex> lock(blob_mu_);
    auto it = blobs_.find(h);
    // A damaged blob is as good as absent: the client uploads it again (PutBlob replaces it).
    if (it == blobs_.end() || it->second.damaged()) return false;
    if (s) PinLocked(*s, h, it->second);
    return true;
  }

  Result<bool> PutBlob(uint64_t session, const ContentHash& h, BlobBuffer bytes, bool hashed) override {
    Session* s = FindSession(session);
    {
      std::lock_guard<std::mutex> lock(blob_mu_);
      auto it = blobs_.find(h);
      if (it != blobs_.end() && !it->second.damaged()) {
        if (s) PinLocked(*s, h, it->second);
        return false;
      }
      if (it == blobs_.end()) GENIE_RETURN_IF_ERROR(MakeRoomLocked(bytes.size));
    }
    uint64_t n = bytes.size;
    std::shared_ptr<char[]> buffer = bytes.data;
    // The hash is checked before the blob's first use: a large blob's on a
    // thread of its own, while the connection goes on; a small one's here,
    // since hashing 64 KiB (about 40 us) costs less than starting a thread
    // (about 55 us on the CI machine), and a training step uploads several
    // small inputs (a batch, dropout masks) at every step.
    std::shared_future<bool> verified;
    if (hashed || n <= kHashHere) {
      std::promise<bool> known;
      known.set_value(hashed || ContentHash::Of(buffer.get(), n) == h);
      verified = known.get_future().share();
    } else {
      verified = std::async(std::launch::async, [buffer, n, h] { return ContentHash::Of(buffer.get(), n) == h; }).share();
    }
    at::Tensor data = OnDevice(buffer, n);
    std::lock_guard<std::mutex> lock(blob_mu_);
    auto it = blobs_.find(h);
    if (it != blobs_.end() && it->second.damaged()) {
      // A damaged copy (which sessions may still pin) takes these bytes in its place.
      blob_bytes_ = blob_bytes_ - it->second.bytes + n;
      it->second.data = data;
      it->second.verified = verified;
      it->second.bytes = n;
      if (s) PinLocked(*s, h, it->second);
      return true;
    }
    if (it != blobs_.end()) {
      if (s) PinLocked(*s, h, it->second);
      return false;
    }
    lru_.push_front(h);
    Blob b;
    b.data = data;
    b.verified = verified;
    b.bytes = n;
    b.lru = lru_.begin();
    it = blobs_.emplace(h, std::move(b)).first;
    blob_bytes_ += n;
    if (s) PinLocked(*s, h, it->second);
    return true;
  }

  Status PutTransient(uint64_t session, const ContentHash& name, BlobBuffer bytes) override {
    Session* s = FindSession(session);
    if (!s) return Status::InvalidArgument("no session " + std::to_string(session) + " on this runtime");
    uint64_t n = bytes.size;
    {
      std::lock_guard<std::mutex> lock(blob_mu_);
      GENIE_RETURN_IF_ERROR(MakeRoomLocked(n));
      blob_bytes_ += n;  // now, so that a failure below gives it back
    }
    at::Tensor data;
    try {
      data = OnDevice(bytes.data, n);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(blob_mu_);
      blob_bytes_ -= n;
      return Status::Internal(std::string("could not store a transient payload: ") + e.what());
    }
    KeepTransient(*s, name, std::move(data), n);
    return Status::OK();
  }

  Status ReceiveTransient(uint64_t session, const ContentHash& name, uint64_t n, const Reader& read) override {
    if (!device_.is_cuda() || n < 2 * kDevicePieceBytes) return Runtime::ReceiveTransient(session, name, n, read);
    const auto length = static_cast<int64_t>(n);
    at::Tensor host;
    try {
      host = at::empty({length}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    } catch (const std::exception&) {
      return Runtime::ReceiveTransient(session, name, n, read);  // in pageable memory, whole
    }
    Session* s = FindSession(session);
    Status kept = s ? Status::OK() : Status::InvalidArgument("no session " + std::to_string(session) + " on this runtime");
    if (kept.ok()) {
      std::lock_guard<std::mutex> lock(blob_mu_);
      kept = MakeRoomLocked(n);
      if (kept.ok()) blob_bytes_ += n;  // now, so that a failure below gives it back
    }
    auto give_back = [&] {
      std::lock_guard<std::mutex> lock(blob_mu_);
      blob_bytes_ -= n;
    };
    at::Tensor data;
    if (kept.ok()) {
      try {
        data = at::empty({length}, at::TensorOptions().dtype(at::kByte).device(device_));
      } catch (const std::exception& e) {
        give_back();
        kept = Status::Internal(std::string("could not store a transient payload: ") + e.what());
      }
    }
    char* p = static_cast<char*>(host.data_ptr());
    for (int64_t off = 0; off < length; off += kDevicePieceBytes) {
      const int64_t piece = std::min<int64_t>(kDevicePieceBytes, length - off);
      Status st = read(p + off, static_cast<size_t>(piece));
      if (!st.ok()) {
        if (kept.ok()) give_back();
        return st;
      }
      if (!kept.ok()) continue;  // read past, to answer with the reason
      try {
        // Asynchronous but the last: that one waits for the stream, so for all of them.
        data.narrow(0, off, piece).copy_(host.narrow(0, off, piece), /*non_blocking=*/off + piece < length);
      } catch (const std::exception& e) {
        give_back();
        kept = Status::Internal(std::string("could not store a transient payload: ") + e.what());
      }
    }
    if (!kept.ok()) return kept;
    KeepTransient(*s, name, std::move(data), n);
    return Status::OK();
  }

  // A transient payload's bytes on the device, `n` of them already counted in blob_bytes_, under `name` for `s`.
  void KeepTransient(Session& s, const ContentHash& name, at::Tensor data, uint64_t n) {
    std::lock_guard<std::mutex> lock(blob_mu_);
    auto [it, fresh] = s.transient.try_emplace(name);
    if (!fresh) blob_bytes_ -= it->second.bytes;  // the same name again: these bytes replace those
    it->second.data = std::move(data);
    it->second.bytes = n;
  }

  Status HoldPayload(uint64_t session, const ContentHash& h, const std::string& bytes) override {
    Session* s = FindSession(session);
    if (!s) return Status::InvalidArgument("no session " + std::to_string(session) + " on this runtime");
    uint64_t n = bytes.size();
    {
      std::lock_guard<std::mutex> lock(blob_mu_);
      auto it = s->held.find(h);
      if (it != s->held.end()) {
        ++it->second.holds;
        return Status::OK();
      }
      GENIE_RETURN_IF_ERROR(MakeRoomLocked(n));
      blob_bytes_ += n;
    }
    at::Tensor data;
    try {
      data = OnDevice(BlobBuffer::Copy(bytes).data, n);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(blob_mu_);
      blob_bytes_ -= n;
      return Status::Internal(std::string("could not store a payload: ") + e.what());
    }
    std::lock_guard<std::mutex> lock(blob_mu_);
    s->held[h] = Held{std::move(data), n, 1};
    return Status::OK();
  }

  void ReleasePayload(uint64_t session, const ContentHash& h) override {
    Session* s = FindSession(session);
    if (!s) return;
    std::lock_guard<std::mutex> lock(blob_mu_);
    auto it = s->held.find(h);
    if (it == s->held.end() || --it->second.holds > 0) return;
    blob_bytes_ -= it->second.bytes;
    s->held.erase(it);
  }

  // A received blob's `n` bytes as a 1-D uint8 tensor on the device: the
  // buffer itself on the CPU (kept alive by the tensor), else a copy of it.
  at::Tensor OnDevice(std::shared_ptr<char[]> buffer, uint64_t n) {
    at::Tensor host = at::from_blob(
        buffer.get(), {static_cast<int64_t>(n)}, [buffer](void*) mutable { buffer.reset(); },
        at::TensorOptions().dtype(at::kByte));
    return device_.is_cpu() ? host : host.to(device_);
  }

  uint64_t OpenSession() override {
    std::lock_guard<std::mutex> lock(session_mu_);
    uint64_t id = ++next_session_;
    sessions_.emplace(id, std::make_unique<Session>());
    return id;
  }

  void CloseSession(uint64_t id) override {
    std::unique_ptr<Session> s;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      auto it = sessions_.find(id);
      if (it == sessions_.end()) return;
      s = std::move(it->second);
      sessions_.erase(it);
    }
    std::lock_guard<std::mutex> lock(blob_mu_);
    for (const auto& h : s->pinned) {
      auto it = blobs_.find(h);
      if (it != blobs_.end()) --it->second.pins;
    }
    for (const auto& [name, t] : s->transient) blob_bytes_ -= t.bytes;
    for (const auto& [h, held] : s->held) blob_bytes_ -= held.bytes;
  }

  Status Check(const traces::Segment& seg, const traces::StringTable& strings) override {
    for (const auto& step : seg.steps) {
      if (step.kind != traces::Step::Kind::kOp) continue;
      auto handle = FindOp(strings.Get(step.op.schema));
      if (!handle.ok()) return handle.status();
    }
    return Status::OK();
  }

  Result<ExecuteResult> Execute(uint64_t session_id, const traces::Segment& seg, const traces::StringTable& strings,
                                const std::vector<uint64_t>& fetch, const std::vector<uint64_t>& release) override {
    Session* s;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      auto it = sessions_.find(session_id);
      if (it == sessions_.end()) return Status::InvalidArgument("unknown session");
      s = it->second.get();
    }
    auto start = std::chrono::steady_clock::now();
    ExecuteResult result;
    bool replayed = false;
    try {
      // Inference mode, not just no-grad: ops skip the autograd dispatch
      // layer altogether (a gpt_decode step ran in 0.8 ms instead of 1.3 ms on
      // the CI machine). Backward ops arrive as explicit ops in the segment.
      c10::InferenceMode inference;
#ifdef GENIE_WITH_CUDA_GRAPHS
      if (device_.is_cuda()) {
        GENIE_ASSIGN_OR_RETURN(replayed, RunGraph(*s, seg, strings, fetch, release));
      }
#endif
      for (size_t i = 0; !replayed && i < seg.steps.size(); ++i) {
        const auto& step = seg.steps[i];
        Status st;
        try {
          st = step.kind == traces::Step::Kind::kInput ? BindInput(*s, step.input)
                                                       : RunOp(*s, step.op, strings, &result.scalars);
        } catch (const c10::Error& e) {
          st = Status::InvalidArgument(std::string("torch: ") + e.what_without_backtrace());
        }
        if (!st.ok()) {
          std::string what = step.kind == traces::Step::Kind::kInput ? "input" : strings.Get(step.op.schema);
          return st.WithContext("step " + std::to_string(i) + " (" + what + ")");
        }
      }
      for (uint64_t id : fetch) {
        auto it = s->values.find(id);
        if (it == s->values.end()) return Status::InvalidArgument("fetched value " + std::to_string(id) + " does not exist");
        GENIE_ASSIGN_OR_RETURN(HostTensor out, ToHost(it->second));
        result.fetched.push_back(std::move(out));
      }
      for (uint64_t id : release) s->values.erase(id);
    } catch (const c10::Error& e) {
      return Status::InvalidArgument(std::string("torch: ") + e.what_without_backtrace());
    } catch (const std::exception& e) {
      return Status::InvalidArgument(std::string("torch: ") + e.what());
    }
    result.graph = replayed;
    result.execute_us = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
    return result;
  }

  bool DefinesOnly(const traces::Segment& seg, const traces::StringTable& strings) override {
    // Values defined so far -> the value whose storage they alias; a storage
    // is the segment's own when that value is defined in it too.
    std::unordered_map<traces::ValueId, traces::ValueId> storage;
    auto own = [&](const Arg& a) {
      auto it = a.kind == Arg::Kind::kTensor ? storage.find(a.tensor) : storage.end();
      return it != storage.end() && storage.count(it->second) != 0;
    };
    for (const auto& step : seg.steps) {
      if (step.kind == traces::Step::Kind::kInput) {
        storage[step.input.id] = step.input.meta.storage;
        continue;
      }
      const traces::Op& op = step.op;
      if (op.flags & traces::Op::kRandom) return false;
      auto handle = FindOp(strings.Get(op.schema));
      if (!handle.ok()) return false;
      const auto& params = handle->schema().arguments();
      // Draws from the RNG, unless it is attention whose dropout is off.
      if (handle->hasTag(at::Tag::nondeterministic_seeded)) {
        size_t i = 0;
        while (i < params.size() && params[i].name() != "dropout_p") ++i;
        if (i == params.size()) return false;
        const Arg* p = GivenArg(op, params[i], i, strings);
        bool off = p ? (p->kind == Arg::Kind::kFloat && p->f == 0) || (p->kind == Arg::Kind::kInt && p->i == 0)
                     : params[i].default_value() && params[i].default_value()->isDouble() &&
                           params[i].default_value()->toDouble() == 0;
        if (!off) return false;
      }
      if (!AllWritten(op, params, strings, own)) return false;
      for (const auto& out : op.outputs)
        if (out.is_tensor) storage[out.id] = out.meta.storage;
    }
    return true;
  }

  std::optional<std::vector<HostTensor>> FetchBefore(uint64_t session_id, const traces::Segment& seg,
                                                     const traces::StringTable& strings,
                                                     const std::vector<uint64_t>& fetch) override {
    Session* s = FindSession(session_id);
    if (!s || fetch.empty()) return std::nullopt;
    std::unordered_set<traces::ValueId> fetched(fetch.begin(), fetch.end());
    std::vector<const c10::StorageImpl*> storages;
    for (uint64_t id : fetch) {
      auto it = s->values.find(id);
      if (it == s->values.end() || !it->second.has_storage()) return std::nullopt;
      storages.push_back(it->second.storage().unsafeGetStorageImpl());
    }
    // Where each value's storage comes from: a held value's own storage;
    // for a value the segment defines, nullptr when it made the storage,
    // else the storage of the argument its schema says it aliases (a view,
    // an in-place op's result), or kUnknown.
    const c10::StorageImpl* const kUnknown = reinterpret_cast<const c10::StorageImpl*>(1);
    std::unordered_map<traces::ValueId, const c10::StorageImpl*> origin;
    auto origin_of = [&](traces::ValueId id) -> const c10::StorageImpl* {
      auto defined = origin.find(id);
      if (defined != origin.end()) return defined->second;
      auto it = s->values.find(id);
      if (it == s->values.end() || !it->second.has_storage()) return kUnknown;
      return it->second.storage().unsafeGetStorageImpl();
    };
    auto apart = [&](const Arg& a) {  // a write into `a` cannot reach a fetched value
      if (a.kind != Arg::Kind::kTensor) return true;
      const c10::StorageImpl* o = origin_of(a.tensor);
      return o != kUnknown && (!o || std::find(storages.begin(), storages.end(), o) == storages.end());
    };
    for (const auto& step : seg.steps) {
      if (step.kind == traces::Step::Kind::kInput) {
        if (fetched.count(step.input.id)) return std::nullopt;
        origin[step.input.id] = nullptr;
        continue;
      }
      const traces::Op& op = step.op;
      auto handle = FindOp(strings.Get(op.schema));
      if (!handle.ok()) return std::nullopt;
      const auto& params = handle->schema().arguments();
      const auto& returns = handle->schema().returns();
      if (!AllWritten(op, params, strings, apart)) return std::nullopt;
      // One tensor result per schema return; others (lists) are not followed.
      bool one_each = op.outputs.size() == returns.size();
      for (size_t k = 0; k < op.outputs.size(); ++k) {
        const auto& out = op.outputs[k];
        if (!out.is_tensor || fetched.count(out.id)) return std::nullopt;
        const c10::StorageImpl* o = one_each ? nullptr : kUnknown;
        if (const c10::AliasInfo* alias = one_each ? returns[k].alias_info() : nullptr) {
          o = kUnknown;
          for (size_t i = 0; i < params.size(); ++i) {
            const c10::AliasInfo* p = params[i].alias_info();
            if (!p || p->beforeSets() != alias->beforeSets()) continue;
            const Arg* given = GivenArg(op, params[i], i, strings);
            if (given && given->kind == Arg::Kind::kTensor) o = origin_of(given->tensor);
            break;
          }
        }
        origin[out.id] = o;
      }
    }
    std::vector<HostTensor> values;
    try {
      for (uint64_t id : fetch) {
        auto host = ToHost(s->values.at(id));
        if (!host.ok()) return std::nullopt;
        values.push_back(std::move(host).value());
      }
    } catch (const c10::Error&) {
      return std::nullopt;  // the segment's run reports what is wrong
    }
    return values;
  }

  bool UsesFingerprints() const override {
#ifdef GENIE_WITH_CUDA_GRAPHS
    return device_.is_cuda();
#else
    return false;
#endif
  }

  bool HoldsAny(uint64_t session, const std::vector<uint64_t>& ids) override {
    Session* s = FindSession(session);
    if (!s) return false;
    for (uint64_t id : ids)
      if (s->values.count(id)) return true;
    return false;
  }

  void Release(uint64_t session, const std::vector<uint64_t>& ids) override {
    Session* s = FindSession(session);
    if (!s) return;
    for (uint64_t id : ids) s->values.erase(id);
  }

  uint64_t SessionValues(uint64_t session) override {
    Session* s = FindSession(session);
    return s ? s->values.size() : 0;
  }

  RuntimeStats stats() override {
    std::lock_guard<std::mutex> lock(blob_mu_);
    RuntimeStats st;
    st.blobs = blobs_.size();
    st.blob_bytes = blob_bytes_;
    st.evictions = evictions_;
    std::lock_guard<std::mutex> lock2(session_mu_);
    st.sessions = sessions_.size();
    return st;
  }

 private:
  Session* FindSession(uint64_t id) {
    std::lock_guard<std::mutex> lock(session_mu_);
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : it->second.get();
  }

  // Marks the blob used by `s` (and most recently used); needs blob_mu_.
  void PinLocked(Session& s, const ContentHash& h, Blob& b) {
    lru_.splice(lru_.begin(), lru_, b.lru);
    if (s.pinned.insert(h).second) ++b.pins;
  }

  Status MakeRoomLocked(uint64_t n) {
    if (max_memory_ == 0) return Status::OK();
    if (n > max_memory_)
      return Status::InvalidArgument("a blob of " + std::to_string(n) + " bytes exceeds the runtime's memory limit of " +
                                     std::to_string(max_memory_));
    for (auto it = lru_.end(); blob_bytes_ + n > max_memory_ && it != lru_.begin();) {
      --it;
      auto b = blobs_.find(*it);
      if (b->second.pins > 0) continue;
      blob_bytes_ -= b->second.bytes;
      ++evictions_;
      blobs_.erase(b);
      it = lru_.erase(it);
    }
    if (blob_bytes_ + n > max_memory_)
      return Status::InvalidArgument("the runtime's memory limit of " + std::to_string(max_memory_) +
                                     " bytes is reached by tensors that running sessions use");
    return Status::OK();
  }

  // A copy of the payload `h` as a tensor of `meta`'s dtype and shape: of
  // the session's held payload, else of the blob (which the session pins).
  Result<at::Tensor> FromBlob(Session& s, const ContentHash& h, const traces::TensorMeta& meta) {
    if (h.transient()) return TakeTransient(s, h, meta);
    at::Tensor data;
    std::shared_future<bool> verified;
    {
      std::lock_guard<std::mutex> lock(blob_mu_);
      auto held = s.held.find(h);
      if (held != s.held.end()) {
        if (held->second.bytes != meta.nbytes())
          return Status::InvalidArgument("payload " + h.Hex(16) + " has " + std::to_string(held->second.bytes) +
                                         " bytes, the tensor needs " + std::to_string(meta.nbytes()));
        data = held->second.data;
      } else {
        auto it = blobs_.find(h);
        if (it == blobs_.end()) return Status::NotFound("payload " + h.Hex(16) + " is not on this runtime");
        verified = it->second.verified;
      }
    }
    if (data.defined()) return CopyOf(data, meta);
    if (!verified.get()) {
      std::lock_guard<std::mutex> lock(blob_mu_);
      auto it = blobs_.find(h);
      if (it != blobs_.end() && it->second.pins == 0) {
        blob_bytes_ -= it->second.bytes;
        lru_.erase(it->second.lru);
        blobs_.erase(it);
      }
      return Status::InvalidArgument("payload " + h.Hex(16) + " failed its hash check (damaged in transit); upload it again");
    }
    {
      std::lock_guard<std::mutex> lock(blob_mu_);
      auto it = blobs_.find(h);
      if (it == blobs_.end()) return Status::NotFound("payload " + h.Hex(16) + " is not on this runtime");
      if (it->second.bytes != meta.nbytes())
        return Status::InvalidArgument("payload " + h.Hex(16) + " has " + std::to_string(it->second.bytes) +
                                       " bytes, the tensor needs " + std::to_string(meta.nbytes()));
      PinLocked(s, h, it->second);
      data = it->second.data;
    }
    return CopyOf(data, meta);
  }

  // `data`'s bytes as a new tensor of `meta`'s dtype and shape: a copy, so
  // in-place updates (an optimizer's) never change the bytes kept.
  at::Tensor CopyOf(const at::Tensor& data, const traces::TensorMeta& meta) {
    at::ScalarType st = ToScalarType(meta.dtype);
    at::Tensor t = at::empty(meta.sizes, at::TensorOptions().dtype(st).device(device_));
    if (t.numel() > 0) t.view({-1}).view(at::kByte).copy_(data);
    return t;
  }

  // A transient payload's bytes as the tensor of `meta`'s dtype and sizes, in
  // place: nothing else holds them. The name is freed either way.
  Result<at::Tensor> TakeTransient(Session& s, const ContentHash& name, const traces::TensorMeta& meta) {
    Transient t;
    {
      std::lock_guard<std::mutex> lock(blob_mu_);
      auto it = s.transient.find(name);
      if (it == s.transient.end())
        return Status::NotFound("transient payload " + name.Hex(16) + " is not on this runtime (an input names it twice, "
                                "or its upload did not arrive)");
      t = std::move(it->second);
      s.transient.erase(it);
      blob_bytes_ -= t.bytes;
    }
    if (t.bytes != meta.nbytes())
      return Status::InvalidArgument("payload " + name.Hex(16) + " has " + std::to_string(t.bytes) +
                                     " bytes, the tensor needs " + std::to_string(meta.nbytes()));
    at::ScalarType st = ToScalarType(meta.dtype);
    if (t.bytes == 0) return at::empty(meta.sizes, at::TensorOptions().dtype(st).device(device_));
    return t.data.view(st).view(meta.sizes);
  }

  Status BindInput(Session& s, const traces::Input& in) {
    if (!in.payload) return Status::InvalidArgument("the trace holds no payload for this input (recorded with --payload none)");
    GENIE_ASSIGN_OR_RETURN(at::Tensor t, FromBlob(s, *in.payload, in.meta));
    s.values[in.id] = std::move(t);
    return Status::OK();
  }

  Result<c10::OperatorHandle> FindOp(const std::string& schema) {
    std::lock_guard<std::mutex> lock(op_mu_);
    auto it = op_cache_.find(schema);
    if (it != op_cache_.end()) return it->second;
    auto dot = schema.find('.');
    std::string name = schema.substr(0, dot);
    std::string overload = dot == std::string::npos ? "" : schema.substr(dot + 1);
    auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!handle)
      return Status::Unsupported("op " + schema + " does not exist in this runtime's LibTorch " + TORCH_VERSION);
    op_cache_.emplace(schema, *handle);
    return *handle;
  }

  Result<c10::OperatorHandle> SessionOp(Session& s, traces::StringId id, const traces::StringTable& strings) {
    if (id < s.ops.size() && s.ops[id]) return *s.ops[id];
    GENIE_ASSIGN_OR_RETURN(c10::OperatorHandle h, FindOp(strings.Get(id)));
    if (s.ops.size() <= id) s.ops.resize(id + 1);
    s.ops[id] = h;
    return h;
  }

  Result<at::Tensor> Value(Session& s, traces::ValueId id) {
    auto it = s.values.find(id);
    if (it == s.values.end()) return Status::InvalidArgument("value " + std::to_string(id) + " is not on this runtime");
    return it->second;
  }

  Result<c10::IValue> ToIValue(Session& s, const Arg& a, c10::TypePtr type, const traces::StringTable& strings) {
    if (type->kind() == c10::TypeKind::OptionalType) type = type->castRaw<c10::OptionalType>()->getElementType();
    if (type->kind() == c10::TypeKind::TensorType &&
        (a.kind == Arg::Kind::kInt || a.kind == Arg::Kind::kFloat || a.kind == Arg::Kind::kBool)) {
      // A Python number where the schema takes a Tensor: a wrapped number,
      // as Python's argument parser makes it, so type promotion treats it as a scalar.
      at::Scalar v = a.kind == Arg::Kind::kFloat ? at::Scalar(a.f)
                     : a.kind == Arg::Kind::kBool ? at::Scalar(a.i != 0)
                                                  : at::Scalar(a.i);
      at::Tensor t = at::scalar_to_tensor(v);
      t.unsafeGetTensorImpl()->set_wrapped_number(true);
      return c10::IValue(std::move(t));
    }
    switch (a.kind) {
      case Arg::Kind::kNone: return c10::IValue();
      case Arg::Kind::kBool: return c10::IValue(a.i != 0);
      case Arg::Kind::kInt:
        if (type->kind() == c10::TypeKind::FloatType) return c10::IValue(static_cast<double>(a.i));
        return c10::IValue(a.i);
      case Arg::Kind::kFloat: return c10::IValue(a.f);
      case Arg::Kind::kString: return c10::IValue(strings.Get(static_cast<traces::StringId>(a.i)));
      case Arg::Kind::kTensor: {
        GENIE_ASSIGN_OR_RETURN(at::Tensor t, Value(s, a.tensor));
        return c10::IValue(std::move(t));
      }
      case Arg::Kind::kDType:
        return c10::IValue(static_cast<int64_t>(ToScalarType(static_cast<DType>(a.i))));
      case Arg::Kind::kDevice: {
        const std::string& d = strings.Get(static_cast<traces::StringId>(a.i));
        if (d.rfind("remote_accelerator", 0) == 0) return c10::IValue(device_);
        return c10::IValue(c10::Device(d));
      }
      case Arg::Kind::kLayout: {
        GENIE_ASSIGN_OR_RETURN(c10::Layout l, ToLayout(strings.Get(static_cast<traces::StringId>(a.i))));
        return c10::IValue(static_cast<int64_t>(l));
      }
      case Arg::Kind::kMemoryFormat: {
        GENIE_ASSIGN_OR_RETURN(c10::MemoryFormat m, ToMemoryFormat(strings.Get(static_cast<traces::StringId>(a.i))));
        return c10::IValue(static_cast<int64_t>(m));
      }
      case Arg::Kind::kList: {
        if (type->kind() != c10::TypeKind::ListType)
          return Status::InvalidArgument("a list where the schema expects " + type->str());
        c10::TypePtr elem = type->castRaw<c10::ListType>()->getElementType();
        bool optional = elem->kind() == c10::TypeKind::OptionalType;
        if (optional) elem = elem->castRaw<c10::OptionalType>()->getElementType();
        switch (elem->kind()) {
          case c10::TypeKind::TensorType: {
            if (optional) {
              c10::List<c10::optional<at::Tensor>> l;
              for (const auto& item : a.list) {
                if (item.kind == Arg::Kind::kNone) {
                  l.push_back(c10::nullopt);
                } else {
                  GENIE_ASSIGN_OR_RETURN(at::Tensor t, Value(s, item.tensor));
                  l.push_back(t);
                }
              }
              return c10::IValue(l);
            }
            c10::List<at::Tensor> l;
            for (const auto& item : a.list) {
              GENIE_ASSIGN_OR_RETURN(at::Tensor t, Value(s, item.tensor));
              l.push_back(t);
            }
            return c10::IValue(l);
          }
          case c10::TypeKind::FloatType: {
            c10::List<double> l;
            for (const auto& item : a.list) l.push_back(item.kind == Arg::Kind::kFloat ? item.f : static_cast<double>(item.i));
            return c10::IValue(l);
          }
          case c10::TypeKind::BoolType: {
            c10::List<bool> l;
            for (const auto& item : a.list) l.push_back(item.i != 0);
            return c10::IValue(l);
          }
          default: {
            c10::List<int64_t> l;
            for (const auto& item : a.list) l.push_back(item.i);
            return c10::IValue(l);
          }
        }
      }
    }
    return Status::InvalidArgument("unknown argument kind");
  }

  static Result<Arg> ToArg(const c10::IValue& v) {
    if (v.isNone()) return Arg::None();
    if (v.isBool()) return Arg::Bool(v.toBool());
    if (v.isInt()) return Arg::Int(v.toInt());
    if (v.isDouble()) return Arg::Float(v.toDouble());
    return Status::Unsupported("an op result of type " + v.tagKind());
  }

#ifdef GENIE_WITH_CUDA_GRAPHS
  // The segment's externals, defined values and inputs; not eligible for a
  // CUDA graph when it has random ops, Python-visible results, ops that write
  // in place to a value from before the segment, a device other than the
  // runtime's, or inputs without payloads.
  GraphPlan PlanGraph(Session& s, const traces::Segment& seg, const traces::StringTable& strings) {
    GraphPlan plan;
    bool computes = false;  // an op whose result is not a view of its arguments'
    std::unordered_set<traces::ValueId> defined, seen;
    std::function<void(const Arg&, bool)> use = [&](const Arg& a, bool written) {
      if (a.kind == Arg::Kind::kList) {
        for (const auto& item : a.list) use(item, written);
      } else if (a.kind == Arg::Kind::kTensor && !defined.count(a.tensor)) {
        if (written) plan.eligible = false;
        if (seen.insert(a.tensor).second) plan.externals.push_back(a.tensor);
      } else if (a.kind == Arg::Kind::kDevice && strings.Get(static_cast<traces::StringId>(a.i)).rfind(
                                                         "remote_accelerator", 0) != 0) {
        plan.eligible = false;
      }
    };
    for (const auto& step : seg.steps) {
      if (step.kind == traces::Step::Kind::kInput) {
        if (!step.input.payload) plan.eligible = false;
        plan.inputs.push_back(&step.input);
        defined.insert(step.input.id);
        plan.defined.push_back(step.input.id);
        continue;
      }
      const traces::Op& op = step.op;
      auto handle = SessionOp(s, op.schema, strings);
      if (!handle.ok() || (op.flags & traces::Op::kRandom)) {
        plan.eligible = false;
        continue;
      }
      const auto& params = handle->schema().arguments();
      for (const auto& r : handle->schema().returns())
        if (!r.alias_info() || r.alias_info()->isWrite()) computes = true;
      auto written = [&](size_t i) { return i < params.size() && params[i].alias_info() && params[i].alias_info()->isWrite(); };
      for (size_t i = 0; i < op.args.size(); ++i) use(op.args[i], written(i));
      for (const auto& [name, a] : op.kwargs) {
        size_t i = 0;
        while (i < params.size() && params[i].name() != strings.Get(name)) ++i;
        use(a, written(i));
      }
      for (const auto& out : op.outputs) {
        if (!out.is_tensor) {
          plan.eligible = false;
          continue;
        }
        defined.insert(out.id);
        plan.defined.push_back(out.id);
      }
    }
    // Views alone (a materialized value's `flatten()`) launch nothing: a
    // graph of them is empty, and torch warns at each capture.
    if (!computes) plan.eligible = false;
    return plan;
  }

  // Once a segment's fingerprint has been seen kCaptureAt times, runs it as a
  // CUDA graph: captured on that sighting, replayed on later ones, so one
  // launch replaces one dispatch and launch per op. Values from before the
  // segment that had the same data on the last two op-by-op runs (parameters)
  // are read in place, and a replay needs them to be the same tensors still;
  // the others (a KV cache, last step's logits) and uploaded inputs are
  // copied into the graph's buffers first. Defined values the program keeps
  // (not released with the segment, or fetched) are copied out of the graph's
  // memory, which the next replay overwrites. Returns false when the segment
  // is to run op by op instead (too few sightings, not eligible, a failed
  // capture, or externals that changed).
  Result<bool> RunGraph(Session& s, const traces::Segment& seg, const traces::StringTable& strings,
                        const std::vector<uint64_t>& fetch, const std::vector<uint64_t>& release) {
    auto found = s.graphs.find(seg.fingerprint);
    if (found == s.graphs.end()) {
      if (s.graphs.size() >= kGraphsPerSession) return false;
      found = s.graphs.emplace(seg.fingerprint, CachedGraph{}).first;
    }
    CachedGraph& g = found->second;
    if (g.failed) return false;
    GraphPlan plan = PlanGraph(s, seg, strings);
    if (!plan.eligible) {
      g.failed = true;
      return false;
    }
    std::vector<at::Tensor> now;
    for (traces::ValueId id : plan.externals) {
      GENIE_ASSIGN_OR_RETURN(at::Tensor t, Value(s, id));
      now.push_back(std::move(t));
    }
    if (!g.graph) {
      if (++g.sightings < kCaptureAt || g.last_data.size() != now.size()) {
        g.last_data.clear();
        for (const auto& t : now) g.last_data.push_back(t.data_ptr());
        return false;
      }
      GENIE_ASSIGN_OR_RETURN(bool captured, Capture(s, seg, strings, plan, now, g));
      if (!captured) return false;
    } else {
      for (size_t i = 0; i < now.size(); ++i) {
        if (g.copied[i]) continue;
        if (!now[i].is_same(g.externals[i])) {  // a parameter replaced: capture again later
          s.graphs.erase(found);
          return false;
        }
      }
    }
    for (size_t i = 0; i < now.size(); ++i)
      if (g.copied[i]) g.externals[i].copy_(now[i]);
    for (size_t j = 0; j < plan.inputs.size(); ++j) {
      GENIE_RETURN_IF_ERROR(BindInput(s, *plan.inputs[j]));
      g.inputs[j].copy_(s.values[plan.inputs[j]->id]);
    }
    g.graph->replay();
    std::unordered_set<uint64_t> dropped(release.begin(), release.end());
    for (uint64_t id : fetch) dropped.erase(id);
    for (const traces::Input* in : plan.inputs) dropped.insert(in->id);  // bound by BindInput above
    for (size_t k = 0; k < plan.defined.size(); ++k) {
      traces::ValueId id = plan.defined[k];
      if (dropped.count(id)) continue;
      const at::Tensor& out = g.outputs[k];
      at::Tensor copy = at::empty_strided(out.sizes(), out.strides(), out.options());
      copy.copy_(out);
      s.values[id] = std::move(copy);
    }
    return true;
  }

  // Captures `seg` into g.graph; false (and the fingerprint marked failed)
  // when capture fails, for example on an op that synchronizes with the host.
  Result<bool> Capture(Session& s, const traces::Segment& seg, const traces::StringTable& strings,
                       const GraphPlan& plan, const std::vector<at::Tensor>& now, CachedGraph& g) {
    g.externals.clear();
    g.copied.clear();
    for (size_t i = 0; i < now.size(); ++i) {
      bool stable = now[i].data_ptr() == g.last_data[i];
      g.copied.push_back(!stable);
      if (stable) {
        g.externals.push_back(now[i]);
      } else {
        at::Tensor buf = at::empty_strided(now[i].sizes(), now[i].strides(), now[i].options());
        g.externals.push_back(buf);
      }
    }
    g.inputs.clear();
    for (const traces::Input* in : plan.inputs)
      g.inputs.push_back(at::empty(in->meta.sizes, at::TensorOptions().dtype(ToScalarType(in->meta.dtype)).device(device_)));

    std::unordered_map<uint64_t, at::Tensor> outside;
    std::swap(outside, s.values);
    for (size_t i = 0; i < plan.externals.size(); ++i) s.values[plan.externals[i]] = g.externals[i];
    for (size_t j = 0; j < plan.inputs.size(); ++j) s.values[plan.inputs[j]->id] = g.inputs[j];
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream();
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
    at::cuda::CUDAEvent ready;
    ready.record(caller);
    ready.block(side);
    Status st;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      std::vector<Arg> scalars;
      try {
        graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
        for (const auto& step : seg.steps) {
          if (step.kind != traces::Step::Kind::kOp) continue;
          st = RunOp(s, step.op, strings, &scalars);
          if (!st.ok()) break;
        }
      } catch (const c10::Error& e) {
        st = Status::InvalidArgument(e.what_without_backtrace());
      }
      try {
        graph->capture_end();
      } catch (const c10::Error& e) {
        if (st.ok()) st = Status::InvalidArgument(e.what_without_backtrace());
      }
    }
    at::cuda::CUDAEvent done;
    done.record(side);
    done.block(caller);
    g.outputs.clear();
    if (st.ok()) {
      for (traces::ValueId id : plan.defined) g.outputs.push_back(s.values[id]);
    }
    std::swap(outside, s.values);
    if (!st.ok()) {
      (void)cudaGetLastError();  // a failed capture leaves its error behind
      g.failed = true;
      g.externals.clear();
      g.inputs.clear();
      g.outputs.clear();
      return false;
    }
    g.graph = std::move(graph);
    return true;
  }
#endif

  // `t` copied to host memory, contiguous.
  static Result<HostTensor> ToHost(const at::Tensor& t) {
    at::Tensor host = t.contiguous().to(at::kCPU);
    HostTensor out;
    GENIE_ASSIGN_OR_RETURN(out.dtype, FromScalarType(host.scalar_type()));
    out.sizes.assign(host.sizes().begin(), host.sizes().end());
    out.bytes.assign(static_cast<const char*>(host.data_ptr()), host.nbytes());
    return out;
  }

  // Runs a random op by taking its recorded results instead of drawing again.
  Status ReplayRandom(Session& s, const traces::Op& op, const traces::StringTable& strings) {
    bool in_place = strings.Get(op.schema).find("_.") != std::string::npos || strings.Get(op.schema).back() == '_';
    for (const auto& out : op.outputs) {
      if (!out.is_tensor) continue;
      GENIE_ASSIGN_OR_RETURN(at::Tensor t, FromBlob(s, *out.payload, out.meta));
      if (in_place && !op.args.empty() && op.args[0].kind == Arg::Kind::kTensor) {
        GENIE_ASSIGN_OR_RETURN(at::Tensor dst, Value(s, op.args[0].tensor));
        dst.copy_(t);
        t = dst;
      }
      s.values[out.id] = t;
    }
    return Status::OK();
  }

  // A generator of the runtime's device, apart from its default one.
  at::Generator NewGenerator(uint64_t seed) {
    at::Generator base = at::globalContext().defaultGenerator(device_);  // a handle on the default one
    at::Generator g;
    {
      std::lock_guard<std::mutex> lock(base.mutex());
      g = base.clone();
    }
    g.set_current_seed(seed);
    return g;
  }

  at::Generator& SessionGenerator(Session& s) {
    if (!s.generator) s.generator = NewGenerator(c10::default_rng_seed_val);
    return *s.generator;
  }

  Status Seed(Session& s, const traces::Op& op) {
    if (op.args.size() != 1 || op.args[0].kind != Arg::Kind::kInt || !op.kwargs.empty())
      return Status::InvalidArgument(std::string(kSeedOp) + " takes one integer");
    s.generator = NewGenerator(static_cast<uint64_t>(op.args[0].i));
    return Status::OK();
  }

  Status RunOp(Session& s, const traces::Op& op, const traces::StringTable& strings, std::vector<Arg>* scalars) {
    bool recorded = (op.flags & traces::Op::kRandom) != 0 && !op.outputs.empty();
    for (const auto& out : op.outputs) recorded = recorded && (!out.is_tensor || out.payload.has_value());
    if (recorded) return ReplayRandom(s, op, strings);
    bool random = (op.flags & traces::Op::kRandom) != 0;
    if (random && op.outputs.empty() && strings.Get(op.schema) == kSeedOp) return Seed(s, op);

    GENIE_ASSIGN_OR_RETURN(c10::OperatorHandle handle, SessionOp(s, op.schema, strings));
    const c10::FunctionSchema& schema = handle.schema();
    const auto& params = schema.arguments();
    if (op.args.size() > params.size())
      return Status::InvalidArgument(std::to_string(op.args.size()) + " arguments for a schema of " +
                                     std::to_string(params.size()));
    torch::jit::Stack stack;
    stack.reserve(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const c10::Argument& p = params[i];
      const Arg* given = GivenArg(op, p, i, strings);
      if (random && (!given || given->kind == Arg::Kind::kNone) && p.name() == "generator") {
        stack.push_back(c10::IValue(SessionGenerator(s)));
      } else if (given) {
        GENIE_ASSIGN_OR_RETURN(c10::IValue v, ToIValue(s, *given, p.type(), strings));
        stack.push_back(std::move(v));
      } else if (p.default_value()) {
        stack.push_back(*p.default_value());
      } else {
        return Status::InvalidArgument("argument '" + p.name() + "' is missing");
      }
    }
    handle.callBoxed(&stack);

    // Results flatten as the frontend flattened them: a tensor list into its tensors.
    size_t next = 0;
    auto bind = [&](const c10::IValue& v) -> Status {
      if (next >= op.outputs.size()) return Status::InvalidArgument("the op returned more results than were recorded");
      const traces::Output& out = op.outputs[next++];
      if (out.is_tensor) {
        if (!v.isTensor()) return Status::InvalidArgument("a recorded tensor result came back as " + v.tagKind());
        s.values[out.id] = v.toTensor();
      } else if (v.isTensor() && !v.toTensor().defined()) {
        scalars->push_back(Arg::None());  // an undefined tensor is Python's None
      } else {
        GENIE_ASSIGN_OR_RETURN(Arg a, ToArg(v));
        scalars->push_back(a);
      }
      return Status::OK();
    };
    for (const auto& r : stack) {
      if (r.isTensorList()) {
        for (const at::Tensor& t : r.toTensorList().vec()) GENIE_RETURN_IF_ERROR(bind(c10::IValue(t)));
      } else if (r.isTuple()) {
        for (const auto& e : r.toTupleRef().elements()) GENIE_RETURN_IF_ERROR(bind(e));
      } else {
        GENIE_RETURN_IF_ERROR(bind(r));
      }
    }
    if (next != op.outputs.size()) return Status::InvalidArgument("the op returned fewer results than were recorded");
    return Status::OK();
  }

  c10::Device device_;
  uint64_t max_memory_;
  std::shared_ptr<HostArena> arena_;
  std::shared_ptr<BufferCache> reused_ = std::make_shared<BufferCache>(kReusedLimit);
  std::mutex blob_mu_;
  std::unordered_map<ContentHash, Blob, ContentHashHasher> blobs_;
  std::list<ContentHash> lru_;
  uint64_t blob_bytes_ = 0;
  uint64_t evictions_ = 0;
  std::mutex session_mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  uint64_t next_session_ = 0;
  std::mutex op_mu_;
  std::unordered_map<std::string, c10::OperatorHandle> op_cache_;
};

}  // namespace

BlobBuffer BlobBuffer::Allocate(size_t n) {
  constexpr size_t kLarge = 1u << 20;
  if (n >= kLarge) {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) return {std::shared_ptr<char[]>(static_cast<char*>(p), [n](char* q) { ::munmap(q, n); }), n};
  }
  return {std::shared_ptr<char[]>(new char[n]), n};
}

BlobBuffer BlobBuffer::Copy(const std::string& s) {
  BlobBuffer b = Allocate(s.size());
  std::memcpy(b.data.get(), s.data(), s.size());
  return b;
}

Status Runtime::ReceiveTransient(uint64_t session, const ContentHash& name, uint64_t n, const Reader& read) {
  BlobBuffer bytes = AllocateTransient(n);
  GENIE_RETURN_IF_ERROR(read(bytes.data.get(), n));
  return PutTransient(session, name, std::move(bytes));
}

Result<std::unique_ptr<Runtime>> Runtime::Create(const std::string& device, uint64_t max_memory, bool tf32_conv) {
  c10::Device dev(c10::kCPU);
  try {
    dev = c10::Device(device == "cuda" ? "cuda:0" : device);
  } catch (const c10::Error&) {
    return Status::InvalidArgument("unknown device '" + device + "' (cpu, cuda or cuda:N)");
  }
  if (dev.is_cuda()) {
    if (!at::hasCUDA()) return Status::InvalidArgument("device " + device + ": this runtime's LibTorch has no CUDA");
    int64_t n = c10::impl::getDeviceGuardImpl(c10::kCUDA)->deviceCount();
    if (dev.index() >= n)
      return Status::InvalidArgument("device " + dev.str() + " does not exist (" + std::to_string(n) + " GPUs)");
    // Full float32 precision unless asked, so results verify against CPU recordings.
    at::globalContext().setAllowTF32CuDNN(tf32_conv);
    at::globalContext().setAllowTF32CuBLAS(false);
  } else if (!dev.is_cpu()) {
    return Status::InvalidArgument("device " + device + " is not supported (cpu, cuda or cuda:N)");
  }
  return std::unique_ptr<Runtime>(new TorchRuntime(dev, max_memory));
}

}  // namespace genie::runtime

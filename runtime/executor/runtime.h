// The runtime's state and execution: a content-addressed blob cache with a
// memory limit, sessions holding their values, and ops run by schema name
// through the c10 dispatcher (no op table).
//
// This header is free of torch types, so the server and the tests build
// without torch headers; runtime.cc is the only file that includes them.
// Thread safety: every method may be called from any thread; a session is
// used by one connection at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/content_hash.h"
#include "common/status.h"
#include "traces/graph.h"

namespace genie::runtime {

struct HostTensor {
  traces::DType dtype = traces::DType::kFloat32;
  std::vector<int64_t> sizes;
  std::string bytes;  // contiguous
};

struct ExecuteResult {
  std::vector<HostTensor> fetched;   // in the order asked for
  std::vector<traces::Arg> scalars;  // non-tensor op results, in op order
  uint32_t execute_us = 0;
  bool graph = false;  // ran as a replayed CUDA graph
};

// A blob's bytes as received, uninitialized until filled (no memset of
// hundreds of megabytes before the network writes them).
struct BlobBuffer {
  std::shared_ptr<char[]> data;
  size_t size = 0;
  // Memory outside any arena: large buffers are mapped populated, so the
  // network writes into pages already faulted in.
  static BlobBuffer Allocate(size_t n);
  static BlobBuffer Copy(const std::string& s);
};

struct RuntimeStats {
  uint64_t blobs = 0;
  uint64_t blob_bytes = 0;
  uint64_t evictions = 0;
  uint64_t sessions = 0;
};

class Runtime {
 public:
  // `device`: "cpu", "cuda" or "cuda:N". `max_memory`: bytes the blob cache
  // may hold (0: no limit); with a limit, that much host memory is reserved
  // and faulted in up front to receive blobs into. `tf32_conv`: on CUDA,
  // convolutions may use TF32, as eager PyTorch's default
  // (torch.backends.cudnn.allow_tf32) lets them; off by default, so results
  // verify against CPU recordings at float32 precision. Fails when the device
  // does not exist.
  static Result<std::unique_ptr<Runtime>> Create(const std::string& device, uint64_t max_memory,
                                                 bool tf32_conv = false);
  virtual ~Runtime() = default;

  virtual std::string device() const = 0;

  // A buffer for a blob of `n` bytes about to be received: from the host
  // arena reserved at start-up (with a memory limit), else freshly mapped.
  virtual BlobBuffer AllocateBlob(size_t n) = 0;
  // A buffer for a transient payload of `n` bytes about to be received
  // (PutTransient): on CUDA, page-locked host memory, which the copy to the
  // device reads at full speed and a cache hands out again for the next one
  // (no page faulted in anew per upload); on the CPU without a memory limit,
  // from 1 MiB, a mapping that comes back for the next upload of its size
  // once the value that took it is freed (BufferCache); else as AllocateBlob.
  virtual BlobBuffer AllocateTransient(size_t n) = 0;
  virtual std::string torch_version() const = 0;

  // Whether the blob is here; if it is, `session` pins it (it will not be
  // evicted before the session closes).
  virtual bool HasBlob(uint64_t session, const ContentHash& h) = 0;
  // Stores `bytes` under `h` on the device, pinned by `session`. Returns
  // false when it was already there. Evicts blobs no session pins, least
  // recently used first, to stay under the memory limit; fails when it cannot.
  // The SHA-256 of the bytes is checked on another thread, so the transfer of
  // the next blob overlaps it; a blob is usable once its check passes, and one
  // that fails is dropped and named in the error of the segment that needed it.
  // `hashed`: the caller computed `h` from these very bytes, so no check runs.
  virtual Result<bool> PutBlob(uint64_t session, const ContentHash& h, BlobBuffer bytes, bool hashed = false) = 0;
  Result<bool> PutBlob(uint64_t session, const ContentHash& h, const std::string& bytes) {
    return PutBlob(session, h, BlobBuffer::Copy(bytes));
  }
  // Stores `bytes` on the device for `session` alone under `name`, a name the
  // client chose (a transient payload, wire PutBlob.transient), unchecked.
  // The one input that names it takes the bytes as its value, without a copy,
  // and frees the name; the session's close frees any left. Counts against
  // the memory limit as a pinned blob does.
  virtual Status PutTransient(uint64_t session, const ContentHash& name, BlobBuffer bytes) = 0;
  // Receives a transient payload of `n` bytes through `read`, which fills
  // the buffer it is given (pieces in order, `n` bytes in all), and stores
  // it as PutTransient does. On CUDA, a large one is copied to the device
  // piece by piece as it arrives, so that the copy overlaps the network;
  // elsewhere it is AllocateTransient, one read, PutTransient. A failure of
  // `read` is returned as it is, at once (the connection is gone); any
  // other failure only after all `n` bytes were read, so that the caller's
  // stream stays in step.
  using Reader = std::function<Status(char* into, size_t n)>;
  virtual Status ReceiveTransient(uint64_t session, const ContentHash& name, uint64_t n, const Reader& read);
  // Holds `bytes`, a small payload named by its content hash `h` (computed
  // by the caller), for `session` alone, once more: a template run's payload
  // is held while its template slot names it (server.cc). Inputs of the
  // session bind it as they bind a blob. ReleasePayload gives one hold
  // back; the bytes go with the last hold, or at the session's close. Not
  // in the shared blob cache, so not kept past its use; counts against the
  // memory limit.
  virtual Status HoldPayload(uint64_t session, const ContentHash& h, const std::string& bytes) = 0;
  virtual void ReleasePayload(uint64_t session, const ContentHash& h) = 0;

  virtual uint64_t OpenSession() = 0;
  virtual void CloseSession(uint64_t session) = 0;

  // Checks that every op of `seg` exists in this LibTorch; the error names
  // the first op missing and the torch version. Nothing runs.
  virtual Status Check(const traces::Segment& seg, const traces::StringTable& strings) = 0;

  // Runs `seg` in `session` (after Check): inputs come from blobs, random ops
  // with recorded results take those, every other op runs through the
  // dispatcher. The values in `fetch` are copied back to the host, then the
  // values in `release` are freed. On CUDA, a segment whose fingerprint has
  // repeated runs as a CUDA graph instead, when it can (see runtime.cc
  // RunGraph); `release` tells it which results need no copy out of the graph.
  virtual Result<ExecuteResult> Execute(uint64_t session, const traces::Segment& seg,
                                        const traces::StringTable& strings, const std::vector<uint64_t>& fetch,
                                        const std::vector<uint64_t>& release = {}) = 0;

  // Whether running `seg` changes nothing but the values it defines: no op
  // writes into an argument (in place or `out=`) other than a tensor whose
  // storage the segment itself made (an attention mask filled in place),
  // and none draws random numbers (attention with dropout_p 0 draws none). Such a segment can run ahead of its
  // request and be dropped when the request differs (server.cc, run-ahead).
  // False when an op is missing.
  virtual bool DefinesOnly(const traces::Segment& seg, const traces::StringTable& strings) = 0;

  // The values `fetch` names, copied to the host as they are before `seg`
  // runs, when running `seg` cannot change them: `session` holds each one
  // already, `seg` defines none of them, no op of `seg` writes into a tensor
  // whose storage might be one of theirs, and no op has a result other than
  // tensors (a reply carries those). Then the answer to `seg` can go out
  // before it runs (a training step's loss, computed by the parts before,
  // while the optimizer's ops run). nullopt otherwise, and when `fetch` is
  // empty.
  virtual std::optional<std::vector<HostTensor>> FetchBefore(uint64_t session, const traces::Segment& seg,
                                                             const traces::StringTable& strings,
                                                             const std::vector<uint64_t>& fetch) = 0;

  // Whether Execute reads Segment::fingerprint (CUDA graphs); a caller that
  // rebuilds a segment need not compute it otherwise.
  virtual bool UsesFingerprints() const = 0;

  // Whether `session` holds any of `ids`.
  virtual bool HoldsAny(uint64_t session, const std::vector<uint64_t>& ids) = 0;

  // Frees values of `session` (unknown ids are ignored).
  virtual void Release(uint64_t session, const std::vector<uint64_t>& ids) = 0;
  // Values `session` holds.
  virtual uint64_t SessionValues(uint64_t session) = 0;

  virtual RuntimeStats stats() = 0;
};

}  // namespace genie::runtime

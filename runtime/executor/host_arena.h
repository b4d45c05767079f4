// A region of host memory reserved when the runtime starts, and faulted in
// by a background thread (so start-up does not wait for it), from which blob
// buffers are carved. Receiving a tensor into it touches no fresh pages, so
// uploads run at the speed of the socket instead of the kernel's page
// zeroing. Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace genie::runtime {

class HostArena {
 public:
  // Maps `bytes` and starts faulting it in; an arena of size 0 when mapping fails.
  explicit HostArena(size_t bytes);
  ~HostArena();
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  // A block of at least `n` bytes, or nullptr when no free block is large
  // enough. The block must be returned with Free.
  char* Allocate(size_t n);
  void Free(char* p);

  size_t capacity() const { return size_; }
  size_t free_bytes();

 private:
  char* base_ = nullptr;
  size_t size_ = 0;
  std::mutex mu_;
  std::map<size_t, size_t> free_;  // offset -> length, coalesced
  std::map<size_t, size_t> used_;  // offset -> length
  std::atomic<bool> stop_{false};
  std::thread populate_;
};

// Mapped buffers for large uploads, each kept once freed for the next of the
// same size (a loop's new batch at every step, on a runtime without an
// arena): received into pages already faulted in, not fresh ones the kernel
// zeroes first. Keeps at most `limit` bytes of free buffers. Thread-safe;
// its buffers may outlive it. Make it with std::make_shared.
class BufferCache : public std::enable_shared_from_this<BufferCache> {
 public:
  explicit BufferCache(size_t limit) : limit_(limit) {}
  ~BufferCache();
  BufferCache(const BufferCache&) = delete;
  BufferCache& operator=(const BufferCache&) = delete;

  // A buffer of `n` bytes: a free one of that size, else a new mapping
  // (populated); nullptr when mapping fails.
  std::shared_ptr<char[]> Take(size_t n);
  size_t free_bytes();

 private:
  void Give(char* p, size_t n);

  size_t limit_;
  std::mutex mu_;
  std::multimap<size_t, char*> free_;  // length -> buffer
  size_t free_bytes_ = 0;
};

}  // namespace genie::runtime

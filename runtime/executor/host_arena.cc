#include "runtime/executor/host_arena.h"

#include <sys/mman.h>

#include <algorithm>

namespace genie::runtime {
namespace {

constexpr size_t kAlign = 4096;

size_t RoundUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

HostArena::HostArena(size_t bytes) {
  if (bytes == 0) return;
  size_t len = RoundUp(bytes);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  base_ = static_cast<char*>(p);
  size_ = len;
  free_[0] = len;
  // MADV_POPULATE_WRITE faults pages in without changing their contents, so
  // it is safe while blobs are already being received into them. Kernels
  // older than 5.14 lack it; their pages fault in on first use instead.
  populate_ = std::thread([this] {
    constexpr size_t kStep = 64u << 20;
    for (size_t off = 0; off < size_ && !stop_; off += kStep) {
      if (::madvise(base_ + off, std::min(kStep, size_ - off), MADV_POPULATE_WRITE) != 0) return;
    }
  });
}

HostArena::~HostArena() {
  stop_ = true;
  if (populate_.joinable()) populate_.join();
  if (base_) ::munmap(base_, size_);
}

char* HostArena::Allocate(size_t n) {
  size_t len = RoundUp(n == 0 ? 1 : n);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < len) continue;
    size_t offset = it->first, rest = it->second - len;
    free_.erase(it);
    if (rest > 0) free_[offset + len] = rest;
    used_[offset] = len;
    return base_ + offset;
  }
  return nullptr;
}

void HostArena::Free(char* p) {
  std::lock_guard<std::mutex> lock(mu_);
  auto u = used_.find(static_cast<size_t>(p - base_));
  if (u == used_.end()) return;
  size_t offset = u->first, len = u->second;
  used_.erase(u);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + len == next->first) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += len;
      return;
    }
  }
  free_[offset] = len;
}

size_t HostArena::free_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [o, l] : free_) n += l;
  return n;
}

BufferCache::~BufferCache() {
  for (const auto& [n, p] : free_) ::munmap(p, n);
}

std::shared_ptr<char[]> BufferCache::Take(size_t n) {
  char* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(n);
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
      free_bytes_ -= n;
    }
  }
  if (!p) {
    void* m = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    p = static_cast<char*>(m);
  }
  std::weak_ptr<BufferCache> cache = weak_from_this();
  return std::shared_ptr<char[]>(p, [cache, n](char* q) {
    if (auto c = cache.lock()) c->Give(q, n);
    else ::munmap(q, n);
  });
}

void BufferCache::Give(char* p, size_t n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_bytes_ + n <= limit_) {
      free_.emplace(n, p);
      free_bytes_ += n;
      return;
    }
  }
  ::munmap(p, n);
}

size_t BufferCache::free_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return free_bytes_;
}

}  // namespace genie::runtime

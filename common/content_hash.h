// Content hashes: the identity of a payload (a tensor's bytes) everywhere in
// Genie. SHA-256 through OpenSSL, so a handle sent by a client can be trusted
// to name exactly one byte string. Live mode's transient payloads (large
// single-use inputs, see recorder/frontend_protocol.h INPUT_PAYLOAD) carry a
// name of the same type instead, which no runtime checks or shares.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace genie {

struct ContentHash {
  std::array<uint8_t, 32> bytes{};

  static ContentHash Of(const void* data, size_t n);
  // The name of stream `stream`'s n-th transient payload: n and the stream
  // id (little-endian), then a 20-byte marker. A SHA-256 that ends with the
  // marker is as unlikely as a collision.
  static ContentHash Transient(uint32_t stream, uint64_t n);
  bool transient() const;
  // The hash whose 32 raw bytes are at `bytes`; false when `n` is not 32.
  static bool FromBytes(const void* bytes, size_t n, ContentHash* out);
  // Lower-case hex; `digits` limits it to a prefix (the dump prints 16).
  std::string Hex(size_t digits = 64) const;
  bool operator==(const ContentHash& o) const { return bytes == o.bytes; }
  bool operator!=(const ContentHash& o) const { return bytes != o.bytes; }
  bool operator<(const ContentHash& o) const { return bytes < o.bytes; }
};

struct ContentHashHasher {
  size_t operator()(const ContentHash& h) const {
    size_t v;
    static_assert(sizeof(v) <= sizeof(h.bytes));
    __builtin_memcpy(&v, h.bytes.data(), sizeof(v));
    return v;
  }
};

// FNV-1a, 64 bits: cheap structural fingerprints (not for content identity).
uint64_t Fnv1a64(const void* data, size_t n, uint64_t seed = 0xcbf29ce484222325ull);

}  // namespace genie

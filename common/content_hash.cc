#include "common/content_hash.h"

#include <openssl/evp.h>

#include <cstring>

namespace genie {

namespace {

// OpenSSL 3 looks EVP_sha256()'s implementation up by name at every digest
// it starts (a lock and a hash table): about half the time of hashing a
// small payload, of which a live training step hashes dozens. The
// implementation is fetched once and each thread keeps a context.
const EVP_MD* Sha256() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched ? fetched : EVP_sha256();
  }();
  return md;
}

struct DigestContext {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~DigestContext() { EVP_MD_CTX_free(ctx); }
};

}  // namespace

ContentHash ContentHash::Of(const void* data, size_t n) {
  ContentHash h;
  unsigned int len = 0;
  thread_local DigestContext context;
  EVP_MD_CTX* ctx = context.ctx;
  if (ctx && EVP_DigestInit_ex2(ctx, Sha256(), nullptr) && EVP_DigestUpdate(ctx, data, n) &&
      EVP_DigestFinal_ex(ctx, h.bytes.data(), &len))
    return h;
  EVP_Digest(data, n, h.bytes.data(), &len, Sha256(), nullptr);
  return h;
}

namespace {
constexpr char kTransientMarker[20] = {'g', 'e', 'n', 'i', 'e', ' ', 't', 'r', 'a', 'n',
                                       's', 'i', 'e', 'n', 't', ' ', 'n', 'a', 'm', 'e'};
}  // namespace

ContentHash ContentHash::Transient(uint32_t stream, uint64_t n) {
  ContentHash h;
  for (int i = 0; i < 8; ++i) h.bytes[i] = static_cast<uint8_t>(n >> (8 * i));
  for (int i = 0; i < 4; ++i) h.bytes[8 + i] = static_cast<uint8_t>(stream >> (8 * i));
  std::memcpy(h.bytes.data() + 12, kTransientMarker, sizeof kTransientMarker);
  return h;
}

bool ContentHash::transient() const {
  return std::memcmp(bytes.data() + 12, kTransientMarker, sizeof kTransientMarker) == 0;
}

bool ContentHash::FromBytes(const void* bytes, size_t n, ContentHash* out) {
  if (n != out->bytes.size()) return false;
  std::memcpy(out->bytes.data(), bytes, n);
  return true;
}

std::string ContentHash::Hex(size_t digits) const {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  s.reserve(64);
  for (uint8_t b : bytes) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  if (digits < s.size()) s.resize(digits);
  return s;
}

uint64_t Fnv1a64(const void* data, size_t n, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace genie

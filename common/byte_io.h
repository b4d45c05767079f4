// Little-endian fixed-width and LEB128 varint encoding into a byte string,
// and a bounds-checked reader over a byte span. Every read that would run past
// the end fails with Status::Corruption instead of touching memory.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "common/status.h"

namespace genie {

class ByteWriter {
 public:
  void U8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { buf_.append(reinterpret_cast<const char*>(&v), 4); }
  void U64(uint64_t v) { buf_.append(reinterpret_cast<const char*>(&v), 8); }
  void F64(double v) { buf_.append(reinterpret_cast<const char*>(&v), 8); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  // Zig-zag, so small negative numbers stay short.
  void SVarint(int64_t v) { Varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void Bytes(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  void Str(std::string_view s) {
    Varint(s.size());
    buf_.append(s.data(), s.size());
  }

  std::string& buffer() { return buf_; }
  const std::string& buffer() const { return buf_; }
  size_t size() const { return buf_.size(); }
  void clear() { buf_.clear(); }

 private:
  std::string buf_;
};

class ByteReader {
 public:
  ByteReader(const void* data, size_t n) : p_(static_cast<const uint8_t*>(data)), end_(p_ + n) {}
  explicit ByteReader(std::string_view s) : ByteReader(s.data(), s.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  bool done() const { return p_ == end_; }

  Status U8(uint8_t* v) { return Fixed(v, 1); }
  Status U32(uint32_t* v) { return Fixed(v, 4); }
  Status U64(uint64_t* v) { return Fixed(v, 8); }
  Status F64(double* v) { return Fixed(v, 8); }
  Status Varint(uint64_t* v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return Status::Corruption("varint runs past the end of its record");
      uint8_t b = *p_++;
      r |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) {
        *v = r;
        return Status::OK();
      }
    }
    return Status::Corruption("varint longer than 10 bytes");
  }
  Status SVarint(int64_t* v) {
    uint64_t u;
    GENIE_RETURN_IF_ERROR(Varint(&u));
    *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
    return Status::OK();
  }
  // A varint that must be at most `limit` (a count or an index read from disk or the wire).
  Status Count(uint64_t* v, uint64_t limit, const char* what) {
    GENIE_RETURN_IF_ERROR(Varint(v));
    if (*v > limit)
      return Status::Corruption(std::string(what) + " " + std::to_string(*v) + " exceeds the limit " +
                                std::to_string(limit));
    return Status::OK();
  }
  Status Str(std::string* s) {
    uint64_t n;
    GENIE_RETURN_IF_ERROR(Count(&n, remaining(), "string length"));
    s->assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return Status::OK();
  }
  Status Skip(size_t n, const uint8_t** where) {
    if (n > remaining()) return Status::Corruption("record runs past the end of its chunk");
    *where = p_;
    p_ += n;
    return Status::OK();
  }

 private:
  Status Fixed(void* v, size_t n) {
    if (n > remaining()) return Status::Corruption("record runs past the end of its chunk");
    std::memcpy(v, p_, n);
    p_ += n;
    return Status::OK();
  }
  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace genie

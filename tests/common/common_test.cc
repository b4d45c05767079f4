#include <string>
#include <thread>

#include "common/byte_io.h"
#include "common/content_hash.h"
#include "common/crc32c.h"
#include "common/json_writer.h"
#include "tests/catch.h"

using namespace genie;

TEST_CASE("crc32c matches the standard check value") {
  const std::string s = "123456789";
  REQUIRE(Crc32c(s.data(), s.size()) == 0xE3069283u);
  // Extending in two parts gives the same checksum as one pass.
  REQUIRE(Crc32c(s.data() + 4, 5, Crc32c(s.data(), 4)) == 0xE3069283u);
}

TEST_CASE("content hashes are SHA-256") {
  REQUIRE(ContentHash::Of("abc", 3).Hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  REQUIRE(ContentHash::Of("abc", 3).Hex(16) == "ba7816bf8f01cfea");
  // Each thread reuses a digest context of its own: digests one after
  // another, and in other threads, are each the hash of their own bytes.
  REQUIRE(ContentHash::Of("", 0).Hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string million(1000000, 'a');
  std::string in_thread;
  std::thread([&] { in_thread = ContentHash::Of(million.data(), million.size()).Hex(); }).join();
  REQUIRE(in_thread == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  REQUIRE(ContentHash::Of("abc", 3).Hex(16) == "ba7816bf8f01cfea");
}

TEST_CASE("transient payload names are told apart from content hashes and from each other") {
  ContentHash a = ContentHash::Transient(3, 0), b = ContentHash::Transient(3, 1), c = ContentHash::Transient(4, 0);
  REQUIRE(a.transient());
  REQUIRE(b.transient());
  REQUIRE(a != b);
  REQUIRE(a != c);
  REQUIRE_FALSE(ContentHash::Of("abc", 3).transient());
  REQUIRE_FALSE(ContentHash().transient());
  // Their first bytes hold the count, so a stream's names spread out in hash maps.
  REQUIRE(ContentHashHasher()(a) != ContentHashHasher()(b));
}

TEST_CASE("varints round-trip, negative numbers stay short") {
  ByteWriter w;
  const int64_t values[] = {0, 1, -1, 63, -64, 300, -300, INT64_MAX, INT64_MIN};
  for (int64_t v : values) w.SVarint(v);
  w.Varint(UINT64_MAX);
  ByteReader r(w.buffer());
  for (int64_t v : values) {
    int64_t got;
    REQUIRE(r.SVarint(&got).ok());
    REQUIRE(got == v);
  }
  uint64_t u;
  REQUIRE(r.Varint(&u).ok());
  REQUIRE(u == UINT64_MAX);
  REQUIRE(r.done());
  ByteWriter small;
  small.SVarint(-1);
  REQUIRE(small.size() == 1);
}

TEST_CASE("a reader never reads past its bytes") {
  const uint8_t unterminated[] = {0x80, 0x80};
  ByteReader r(unterminated, sizeof(unterminated));
  uint64_t v;
  Status st = r.Varint(&v);
  REQUIRE(st.code() == Status::Code::kCorruption);
  ByteReader r2(unterminated, 1);
  uint32_t x;
  REQUIRE(r2.U32(&x).code() == Status::Code::kCorruption);
  // A string whose length exceeds what is left is refused, not allocated.
  ByteWriter w;
  w.Varint(1u << 30);
  ByteReader r3(w.buffer());
  std::string s;
  REQUIRE(r3.Str(&s).code() == Status::Code::kCorruption);
}

TEST_CASE("json output escapes strings and places commas") {
  JsonWriter w;
  w.BeginObject().Key("a").String("x\"y\n").Key("b").BeginArray().Int(1).Int(-2).EndArray().Key("c").Double(0.5).EndObject();
  REQUIRE(w.str() == "{\"a\":\"x\\\"y\\n\",\"b\":[1,-2],\"c\":0.5}");
}

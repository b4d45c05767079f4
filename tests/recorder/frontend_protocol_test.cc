#include "recorder/frontend_protocol.h"

#include <cstring>

#include "tests/catch.h"
#include "tests/temp_dir.h"
#include "traces/trace_reader.h"

using namespace genie;
using namespace genie::recorder;

namespace {

void PutU32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }

std::string Strings(const std::vector<std::string>& v) {
  std::string s;
  PutU32(s, static_cast<uint32_t>(v.size()));
  for (const auto& x : v) {
    PutU32(s, static_cast<uint32_t>(x.size()));
    s += x;
  }
  return s;
}

std::string HelloBody() { return Strings({"1", "0.1.0", "/usr/bin/python3", "3.11.2", "yes", "1234"}); }

std::string SegmentBody(const std::vector<int64_t>& words, const std::vector<double>& floats = {}) {
  std::string s;
  PutU64(s, 99);
  PutU32(s, static_cast<uint32_t>(words.size()));
  PutU32(s, static_cast<uint32_t>(floats.size()));
  s.append(reinterpret_cast<const char*>(words.data()), words.size() * 8);
  s.append(reinterpret_cast<const char*>(floats.data()), floats.size() * 8);
  return s;
}

std::string PayloadBody(int64_t id, const std::string& bytes, uint64_t total, uint64_t offset) {
  std::string s;
  PutU64(s, static_cast<uint64_t>(id));
  PutU64(s, total);
  PutU64(s, offset);
  return s + bytes;
}

Status Feed(FrontendStream& fs, FrameType t, const std::string& body) {
  return fs.HandleFrame(t, reinterpret_cast<const uint8_t*>(body.data()), body.size());
}

struct Fixture {
  testing::TempDir dir;
  std::unique_ptr<traces::TraceWriter> writer;
  Fixture() {
    auto w = traces::TraceWriter::Create(dir.File("t.gtrace"), traces::TraceHeader());
    REQUIRE(w.ok());
    writer = std::move(w).value();
  }
};

// An input (float32[2], payload 0) and relu over it (sids: 0 "aten::relu", 1 "").
const std::vector<int64_t> kReluWords = {
    1, 0, 1, 8, 1, 2, 1, 0, 0, 0,                  // INPUT id 0, tensor, float32[2]{1}, offset 0, storage 0, payload 0
    2, 0, 1, 1, 0, 1, 5, 0, 0, 1, 1, 1, 8, 1, 2, 1, 0, 1, -1,  // OP relu(%0) -> id 1 float32[2], no payload
    3, 1, 0, -1,                                   // MAT id 1 cpu, no payload
};

}  // namespace

TEST_CASE("frames from the frontend become a trace segment") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  REQUIRE(fs.hello()->interpreter == "/usr/bin/python3");
  REQUIRE(fs.hello()->has_torch);
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
  REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, std::string(4, 'a'), 8, 0)).ok());
  REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, std::string(4, 'b'), 8, 4)).ok());
  Status st = Feed(fs, FrameType::kSegment, SegmentBody(kReluWords));
  INFO(st.message());
  REQUIRE(st.ok());
  REQUIRE(Feed(fs, FrameType::kEnd, "").ok());
  REQUIRE(fs.ended());
  REQUIRE(f.writer->Finish(traces::TraceFooter()).ok());

  auto r = traces::TraceReader::Open(f.dir.File("t.gtrace"));
  REQUIRE(r.ok());
  traces::Segment seg;
  auto more = r.value()->Next(&seg);
  REQUIRE(more.ok());
  REQUIRE(more.value());
  REQUIRE(seg.steps.size() == 2);
  REQUIRE(*seg.steps[0].input.payload == ContentHash::Of("aaaabbbb", 8));
  REQUIRE(r.value()->strings().Get(seg.steps[1].op.schema) == "aten::relu");
  REQUIRE(seg.duration_ns == 99);
}

TEST_CASE("a connection must begin with HELLO") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"x"})).code() == Status::Code::kCorruption);
}

TEST_CASE("a frontend of another protocol version is refused by name") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  Status st = Feed(fs, FrameType::kHello, Strings({"7", "9.9", "/x/python", "3.12", "yes", "1"}));
  REQUIRE(st.code() == Status::Code::kUnsupported);
  REQUIRE(st.message().find("protocol 7") != std::string::npos);
}

TEST_CASE("malformed segments are refused, never read out of bounds") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
  REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, "12345678", 8, 0)).ok());
  SECTION("a string id beyond the table") {
    auto w = kReluWords;
    w[11] = 5;
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(w)).code() == Status::Code::kCorruption);
  }
  SECTION("an unknown payload id") {
    auto w = kReluWords;
    w[9] = 3;
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(w)).code() == Status::Code::kCorruption);
  }
  SECTION("words cut inside a step") {
    auto w = kReluWords;
    w.resize(14);
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(w)).code() == Status::Code::kCorruption);
  }
  SECTION("a frame whose counts disagree with its size") {
    std::string body = SegmentBody(kReluWords);
    body.resize(body.size() - 3);
    REQUIRE(Feed(fs, FrameType::kSegment, body).code() == Status::Code::kCorruption);
  }
  SECTION("a float index beyond the floats") {
    std::vector<int64_t> w = {2, 0, 1, 1, 0, 1, 3, 7, 0, 0};
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(w, {1.0})).code() == Status::Code::kCorruption);
  }
  SECTION("a tensor rank beyond the limit") {
    auto w = kReluWords;
    w[4] = 1000;
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(w)).code() == Status::Code::kCorruption);
  }
  SECTION("a PART that materializes a value") {
    Status st = Feed(fs, FrameType::kPart, SegmentBody(kReluWords));
    REQUIRE(st.code() == Status::Code::kCorruption);
    REQUIRE(st.message().find("PART") != std::string::npos);
  }
  SECTION("a REPLY, which only the genie process sends") {
    REQUIRE(Feed(fs, FrameType::kReply, "").code() == Status::Code::kCorruption);
  }
}

TEST_CASE("a PART without materializations is a segment sent ahead") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
  REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, "12345678", 8, 0)).ok());
  auto part = kReluWords;
  part.resize(part.size() - 4);  // without its MAT step
  REQUIRE(Feed(fs, FrameType::kPart, SegmentBody(part)).ok());
  REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody({3, 1, 0, -1})).ok());  // closed by the MAT alone
  REQUIRE(f.writer->Finish(traces::TraceFooter()).ok());
  auto r = traces::TraceReader::Open(f.dir.File("t.gtrace"));
  REQUIRE(r.ok());
  traces::Segment seg;
  REQUIRE(r.value()->Next(&seg).value());
  REQUIRE(seg.num_ops() == 1);
  REQUIRE(seg.materialized.empty());
  REQUIRE(r.value()->Next(&seg).value());
  REQUIRE(seg.num_ops() == 0);
  REQUIRE(seg.materialized.size() == 1);
}

TEST_CASE("payload pieces must arrive in order and within their payload") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  SECTION("a piece that skips ahead") {
    REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, "abcd", 8, 4)).code() == Status::Code::kCorruption);
  }
  SECTION("a piece past the payload's end") {
    REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, "abcdefghij", 8, 0)).code() == Status::Code::kCorruption);
  }
  SECTION("a payload id out of sequence") {
    REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(4, "abcd", 4, 0)).code() == Status::Code::kCorruption);
  }
}

#include "recorder/frontend_protocol.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "tests/catch.h"
#include "tests/temp_dir.h"
#include "common/byte_io.h"
#include "recorder/launcher.h"
#include "traces/segment_codec.h"
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

std::string HelloBody() {
  return Strings({std::to_string(kFrontendProtocolVersion), "0.1.0", "/usr/bin/python3", "3.11.2", "yes", "1234"});
}

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

// The first segment of the trace `f` wrote, once it is finished.
traces::Segment FirstSegment(Fixture& f) {
  REQUIRE(f.writer->Finish(traces::TraceFooter()).ok());
  auto r = traces::TraceReader::Open(f.dir.File("t.gtrace"));
  REQUIRE(r.ok());
  traces::Segment seg;
  REQUIRE(r.value()->Next(&seg).value());
  return seg;
}

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
  SECTION("a REPLY or an EARLY, which only the genie process sends") {
    REQUIRE(Feed(fs, FrameType::kReply, "").code() == Status::Code::kCorruption);
    REQUIRE(Feed(fs, FrameType::kEarly, "").code() == Status::Code::kCorruption);
  }
  SECTION("an ANSWERED frame, which only live mode takes, and only for one value") {
    Status st = Feed(fs, FrameType::kAnswered, SegmentBody(kReluWords));
    REQUIRE(st.code() == Status::Code::kCorruption);
    REQUIRE(st.message().find("live mode") != std::string::npos);
    auto none = kReluWords;
    none.resize(none.size() - 4);  // without its MAT step
    st = Feed(fs, FrameType::kAnswered, SegmentBody(none));
    REQUIRE(st.code() == Status::Code::kCorruption);
    REQUIRE(st.message().find("one value") != std::string::npos);
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

namespace {

// An op on a tensor and a float (`x * 2.5`) whose first value id, argument and
// length the TEMPLATE patches: its words, with the patched ones 0.
const std::vector<int64_t> kScaleTemplate = {
    2, 0, 1, 1, 0, 2, 5, 0, 3, 0, 0, 1, 1, 0, 8, 1, 0, 1, 0, 0, -1,
};
// kind (0 id, 1 argument id, 2 argument storage, 3 affine in T, 4 float), then a and b, by position.
const std::vector<std::array<int64_t, 4>> kScalePatches = {
    {7, 1, 0, 0}, {9, 4, 0, 0}, {13, 0, 0, 0}, {16, 3, 1, 1}, {19, 0, 0, 0},
};

std::string TemplateBody(uint32_t id, const std::vector<int64_t>& words, const std::vector<double>& floats,
                         const std::vector<std::array<int64_t, 4>>& patches) {
  std::string s;
  PutU32(s, id);
  PutU32(s, static_cast<uint32_t>(words.size()));
  PutU32(s, static_cast<uint32_t>(floats.size()));
  PutU32(s, static_cast<uint32_t>(patches.size()));
  s.append(reinterpret_cast<const char*>(words.data()), words.size() * 8);
  s.append(reinterpret_cast<const char*>(floats.data()), floats.size() * 8);
  for (const auto& p : patches) s.append(reinterpret_cast<const char*>(p.data()), 32);
  return s;
}

// The segments of the trace written by `fs`, each encoded.
std::vector<std::string> Encoded(Fixture& f) {
  REQUIRE(f.writer->Finish(traces::TraceFooter()).ok());
  auto r = traces::TraceReader::Open(f.dir.File("t.gtrace"));
  REQUIRE(r.ok());
  std::vector<std::string> out;
  traces::Segment seg;
  while (r.value()->Next(&seg).value()) {
    ByteWriter w;
    REQUIRE(traces::EncodeSegment(seg, &w).ok());
    out.push_back(w.buffer());
  }
  return out;
}

Status Open(FrontendStream& fs) {
  GENIE_RETURN_IF_ERROR(Feed(fs, FrameType::kHello, HelloBody()));
  GENIE_RETURN_IF_ERROR(Feed(fs, FrameType::kStrings, Strings({"aten::mul", ""})));
  return Feed(fs, FrameType::kPayload, PayloadBody(0, "12345678", 8, 0));
}

}  // namespace

TEST_CASE("a RUN step translates as its template's records, patched, would") {
  // An input of length 4 (id 7), then x * 2.5 written out and as RUNs with T 4 and 5.
  const std::vector<int64_t> input = {1, 7, 1, 8, 1, 4, 1, 0, 7, 0};
  Fixture words, runs;
  FrontendStream a(0, words.writer.get()), b(0, runs.writer.get());
  REQUIRE(Open(a).ok());
  REQUIRE(Open(b).ok());
  std::vector<int64_t> w = input;
  for (int64_t t : {4, 5}) {
    int64_t first = t + 4;  // ids follow the input's
    std::vector<int64_t> op = kScaleTemplate;
    op[7] = 7, op[9] = t - 4, op[13] = first, op[16] = t + 1, op[19] = first;
    w.insert(w.end(), op.begin(), op.end());
  }
  w.insert(w.end(), {3, 9, 0, -1});
  Status written = Feed(a, FrameType::kSegment, SegmentBody(w, {2.5, 2.5}));
  INFO(written.message());
  REQUIRE(written.ok());

  REQUIRE(Feed(b, FrameType::kTemplate, TemplateBody(0, kScaleTemplate, {2.5}, kScalePatches)).ok());
  std::vector<int64_t> r = input;
  r.insert(r.end(), {5, 0, 8, 1, 4, 1, 7, 7, 5, 0, 9, 1, 5, 1, 7, 7, 3, 9, 0, -1});
  Status st = Feed(b, FrameType::kSegment, SegmentBody(r));
  INFO(st.message());
  REQUIRE(st.ok());
  auto want = Encoded(words), got = Encoded(runs);
  REQUIRE(want.size() == 1);
  REQUIRE(got == want);
}

TEST_CASE("a RUN step's word can add terms in several Ts") {
  // The length word as 1 + 2 * T_2 (T_1 unread): patched to 1 (kind 3 with
  // a = 0), then 2 * T_2 added (kind 5); RUNs with Ts (99, 4) and (99, 5).
  const std::vector<int64_t> input = {1, 7, 1, 8, 1, 4, 1, 0, 7, 0};
  auto patches = kScalePatches;
  patches[3] = {16, 3, 0, 1};
  patches.push_back({16, 5, 2, 1});
  Fixture words, runs;
  FrontendStream a(0, words.writer.get()), b(0, runs.writer.get());
  REQUIRE(Open(a).ok());
  REQUIRE(Open(b).ok());
  std::vector<int64_t> w = input, r = input;
  for (int64_t t : {4, 5}) {
    std::vector<int64_t> op = kScaleTemplate;
    op[7] = 7, op[9] = t - 4, op[13] = t + 4, op[16] = 1 + 2 * t, op[19] = t + 4;
    w.insert(w.end(), op.begin(), op.end());
    r.insert(r.end(), {5, 0, t + 4, 2, 99, t, 1, 7, 7});
  }
  w.insert(w.end(), {3, 9, 0, -1});
  r.insert(r.end(), {3, 9, 0, -1});
  REQUIRE(Feed(a, FrameType::kSegment, SegmentBody(w, {2.5, 2.5})).ok());
  REQUIRE(Feed(b, FrameType::kTemplate, TemplateBody(0, kScaleTemplate, {2.5}, patches)).ok());
  Status st = Feed(b, FrameType::kSegment, SegmentBody(r));
  INFO(st.message());
  REQUIRE(st.ok());
  REQUIRE(Encoded(runs) == Encoded(words));
}

TEST_CASE("malformed templates and RUN steps are refused") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  REQUIRE(Open(fs).ok());
  const std::vector<int64_t> input = {1, 7, 1, 8, 1, 4, 1, 0, 7, 0};
  auto run = [&](std::vector<int64_t> step) {
    std::vector<int64_t> w = input;
    w.insert(w.end(), step.begin(), step.end());
    return Feed(fs, FrameType::kSegment, SegmentBody(w));
  };
  SECTION("a template id out of order") {
    REQUIRE(Feed(fs, FrameType::kTemplate, TemplateBody(1, kScaleTemplate, {2.5}, kScalePatches)).code() ==
            Status::Code::kCorruption);
  }
  SECTION("a patch past the words") {
    auto patches = kScalePatches;
    patches[0][0] = 21;
    REQUIRE(Feed(fs, FrameType::kTemplate, TemplateBody(0, kScaleTemplate, {2.5}, patches)).code() ==
            Status::Code::kCorruption);
  }
  SECTION("a patch that adds a T past the limit") {
    auto patches = kScalePatches;
    patches[3] = {16, 5, 1, kMaxTemplateTs};
    REQUIRE(Feed(fs, FrameType::kTemplate, TemplateBody(0, kScaleTemplate, {2.5}, patches)).code() ==
            Status::Code::kCorruption);
  }
  SECTION("a float patch past the floats") {
    REQUIRE(Feed(fs, FrameType::kTemplate, TemplateBody(0, kScaleTemplate, {}, kScalePatches)).code() ==
            Status::Code::kCorruption);
  }
  SECTION("a frame whose counts disagree with its size") {
    std::string body = TemplateBody(0, kScaleTemplate, {2.5}, kScalePatches);
    body.resize(body.size() - 8);
    REQUIRE(Feed(fs, FrameType::kTemplate, body).code() == Status::Code::kCorruption);
  }
  SECTION("RUN steps that do not fit their template") {
    REQUIRE(Feed(fs, FrameType::kTemplate, TemplateBody(0, kScaleTemplate, {2.5}, kScalePatches)).ok());
    SECTION("an unknown template") { REQUIRE(run({5, 1, 20, 1, 4, 1, 7, 7}).code() == Status::Code::kCorruption); }
    SECTION("fewer arguments than its patches read") {
      REQUIRE(run({5, 0, 20, 1, 4, 0}).code() == Status::Code::kCorruption);
    }
    SECTION("fewer Ts than its patches read, or more than a RUN may bring") {
      REQUIRE(run({5, 0, 20, 0, 1, 7, 7}).code() == Status::Code::kCorruption);
      REQUIRE(run({5, 0, 20, 17, 4, 1, 7, 7}).code() == Status::Code::kCorruption);
    }
    SECTION("an integer that overflows") {
      REQUIRE(run({5, 0, 20, 1, INT64_MAX, 1, 7, 7}).code() == Status::Code::kCorruption);
    }
    SECTION("words cut inside the step") { REQUIRE(run({5, 0, 20, 1, 4, 1, 7}).code() == Status::Code::kCorruption); }
  }
  SECTION("a template whose records hold another RUN or a materialization") {
    for (auto bad : {std::vector<int64_t>{5, 0, 20, 0, 0}, std::vector<int64_t>{3, 7, 0, -1}}) {
      Fixture g;
      FrontendStream other(0, g.writer.get());
      REQUIRE(Open(other).ok());
      REQUIRE(Feed(other, FrameType::kTemplate, TemplateBody(0, bad, {}, {})).ok());
      std::vector<int64_t> w = input;
      w.insert(w.end(), {5, 0, 20, 0, 0});
      Status st = Feed(other, FrameType::kSegment, SegmentBody(w));
      REQUIRE(st.code() == Status::Code::kCorruption);
      REQUIRE(st.message().find("template") != std::string::npos);
    }
  }
}

namespace {

// A sink that keeps WRITES entries, in its own string ids.
class WritesSink final : public FrontendSink {
 public:
  traces::StringTable& strings() override { return strings_; }
  Status AddPayload(const ContentHash&, std::string, bool) override { return Status::OK(); }
  Status AddSegment(const traces::Segment&, const std::vector<traces::ValueId>&, bool) override { return Status::OK(); }
  Status AddWrite(traces::StringId op, uint32_t position, traces::StringId name) override {
    writes.push_back(strings_.Get(op) + " " + std::to_string(position) + " " + strings_.Get(name));
    return Status::OK();
  }
  std::vector<std::string> writes;

 private:
  traces::StringTable strings_;
};

std::string WritesBody(const std::vector<std::array<uint32_t, 3>>& entries) {
  std::string s;
  PutU32(s, static_cast<uint32_t>(entries.size()));
  for (const auto& e : entries)
    for (uint32_t v : e) PutU32(s, v);
  return s;
}

}  // namespace

namespace {

// A live sink's view of ANSWERED frames: which values they answered.
class AnsweredSink final : public FrontendSink {
 public:
  traces::StringTable& strings() override { return strings_; }
  Status AddPayload(const ContentHash&, std::string, bool) override { return Status::OK(); }
  Status AddSegment(const traces::Segment&, const std::vector<traces::ValueId>&, bool) override {
    ++segments;
    return Status::OK();
  }
  Status AddAnswered(const traces::Segment& seg, const std::vector<traces::ValueId>& released) override {
    answered.push_back(seg.materialized.at(0).id);
    released_after = released;
    return Status::OK();
  }
  int segments = 0;
  std::vector<uint64_t> answered;
  std::vector<traces::ValueId> released_after;

 private:
  traces::StringTable strings_;
};

}  // namespace

TEST_CASE("an ANSWERED frame goes to the sink as its own kind of segment") {
  AnsweredSink sink;
  FrontendStream fs(0, &sink);
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
  REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(0, "12345678", 8, 0)).ok());
  auto words = kReluWords;
  words.insert(words.end(), {4, 1, 0});  // RELEASE id 0 after the MAT step
  REQUIRE(Feed(fs, FrameType::kAnswered, SegmentBody(words)).ok());
  REQUIRE(sink.segments == 0);
  REQUIRE(sink.answered == std::vector<uint64_t>{1});
  REQUIRE(sink.released_after == std::vector<traces::ValueId>{0});
  REQUIRE(fs.segments() == 1);
}

TEST_CASE("a WRITES frame names the arguments ops write, in the sink's string ids") {
  WritesSink sink;
  sink.strings().Intern("taken first");  // the stream's ids are re-interned
  FrontendStream fs(0, &sink);
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::add_.Tensor", "self", "aten::native_batch_norm",
                                                  "running_mean", "running_var"})).ok());
  REQUIRE(Feed(fs, FrameType::kWrites, WritesBody({{0, 0, 1}, {2, 3, 3}, {2, 4, 4}})).ok());
  REQUIRE(sink.writes == std::vector<std::string>{"aten::add_.Tensor 0 self", "aten::native_batch_norm 3 running_mean",
                                                  "aten::native_batch_norm 4 running_var"});

  SECTION("a trace keeps none of them") {
    Fixture f;
    FrontendStream to_trace(0, f.writer.get());
    REQUIRE(Feed(to_trace, FrameType::kHello, HelloBody()).ok());
    REQUIRE(Feed(to_trace, FrameType::kStrings, Strings({"aten::add_.Tensor", "self"})).ok());
    REQUIRE(Feed(to_trace, FrameType::kWrites, WritesBody({{0, 0, 1}})).ok());
  }
  SECTION("a frame whose count disagrees with its size") {
    std::string body = WritesBody({{0, 0, 1}});
    body.pop_back();
    REQUIRE(Feed(fs, FrameType::kWrites, body).code() == Status::Code::kCorruption);
    REQUIRE(Feed(fs, FrameType::kWrites, WritesBody({{0, 0, 1}}) + "x").code() == Status::Code::kCorruption);
  }
  SECTION("a string id beyond the table") {
    REQUIRE(Feed(fs, FrameType::kWrites, WritesBody({{5, 0, 1}})).code() == Status::Code::kCorruption);
    REQUIRE(Feed(fs, FrameType::kWrites, WritesBody({{0, 0, 9}})).code() == Status::Code::kCorruption);
  }
}

namespace {

// A live sink's view of payloads: which came hashed, which as transient names.
class PayloadSink final : public FrontendSink {
 public:
  explicit PayloadSink(uint64_t transient_above) : above_(transient_above) {}
  traces::StringTable& strings() override { return strings_; }
  Status AddPayload(const ContentHash& h, std::string bytes, bool single_use) override {
    hashed.emplace_back(h, std::move(bytes));
    single_use_hashed.push_back(single_use);
    return Status::OK();
  }
  bool TakesTransient(uint64_t bytes) const override { return bytes > above_; }
  Status AddTransient(const ContentHash& name, std::string bytes) override {
    transient.emplace_back(name, std::move(bytes));
    return Status::OK();
  }
  Status AddTransientView(const ContentHash& name, std::string_view bytes, uint64_t ready) override {
    // While the sink has them, the ring's header does not give the bytes back yet.
    if (released) released_during_view.push_back(__atomic_load_n(released, __ATOMIC_ACQUIRE));
    pieces.push_back(ready);
    if (ready < bytes.size()) return Status::OK();
    return AddTransient(name, std::string(bytes));
  }
  Status AddSegment(const traces::Segment& seg, const std::vector<traces::ValueId>&, bool) override {
    segments.push_back(seg);
    return Status::OK();
  }
  std::vector<std::pair<ContentHash, std::string>> hashed, transient;
  const uint64_t* released = nullptr;  // a ring's header, when a test watches it
  std::vector<uint64_t> released_during_view;
  std::vector<uint64_t> pieces;  // `ready` of each AddTransientView call
  std::vector<bool> single_use_hashed;  // by hashed payload: an INPUT_PAYLOAD frame's
  std::vector<traces::Segment> segments;

 private:
  uint64_t above_;
  traces::StringTable strings_;
};

}  // namespace

TEST_CASE("an INPUT_PAYLOAD frame's payload is hashed, unless a live sink takes it as a transient one") {
  SECTION("a trace hashes it as any payload") {
    Fixture f;
    FrontendStream fs(0, f.writer.get());
    REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
    REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(0, "aaaa", 8, 0)).ok());
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(0, "bbbb", 8, 4)).ok());
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(kReluWords)).ok());
    REQUIRE(*FirstSegment(f).steps[0].input.payload == ContentHash::Of("aaaabbbb", 8));
  }
  SECTION("a live sink takes those above its size as transient, named by stream and count") {
    PayloadSink sink(4);
    FrontendStream fs(7, &sink);
    REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
    REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(0, "aaaabbbb", 8, 0)).ok());  // above 4 bytes
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(1, "cc", 2, 0)).ok());        // small: hashed
    REQUIRE(Feed(fs, FrameType::kPayload, PayloadBody(2, "dddddddd", 8, 0)).ok());      // a parameter's: hashed
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(3, "eeee", 8, 0)).ok());
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(3, "ffff", 8, 4)).ok());
    REQUIRE(sink.transient.size() == 2);
    REQUIRE(sink.transient[0].first == ContentHash::Transient(7, 0));
    REQUIRE(sink.transient[0].second == "aaaabbbb");
    REQUIRE(sink.transient[1].first == ContentHash::Transient(7, 1));
    REQUIRE(sink.transient[1].second == "eeeeffff");
    REQUIRE(sink.hashed.size() == 2);
    REQUIRE(sink.hashed[0].first == ContentHash::Of("cc", 2));
    REQUIRE(sink.hashed[1].first == ContentHash::Of("dddddddd", 8));
    // The small input is the sink's to drop once sent; the parameter's bytes may be named again.
    REQUIRE(sink.single_use_hashed == std::vector<bool>{true, false});
    // The segment names the payload by its transient name.
    auto words = kReluWords;
    words[9] = 3;  // the input's payload id
    REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(words)).ok());
    REQUIRE(sink.segments.size() == 1);
    REQUIRE(*sink.segments[0].steps[0].input.payload == ContentHash::Transient(7, 1));
    REQUIRE(sink.segments[0].steps[0].input.payload->transient());
  }
  SECTION("a payload's pieces in frames of two types are refused") {
    PayloadSink sink(4);
    FrontendStream fs(0, &sink);
    REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
    REQUIRE(Feed(fs, FrameType::kInputPayload, PayloadBody(0, "aaaa", 8, 0)).ok());
    Status st = Feed(fs, FrameType::kPayload, PayloadBody(0, "bbbb", 8, 4));
    REQUIRE(st.code() == Status::Code::kCorruption);
    REQUIRE(st.message().find("two types") != std::string::npos);
  }
}

namespace {

// Shared memory as the frontend makes it for a RING frame (channel.py): a
// memfd of the header and `size` ring bytes, sealed against shrinking unless `seal` is false.
int RingMemory(uint64_t size, bool seal = true) {
  int fd = ::memfd_create("test-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(kRingHeaderBytes + size)) == 0);
  if (seal) REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
  return fd;
}

std::string Frame(FrameType t, const std::string& body) {
  std::string s;
  PutU32(s, static_cast<uint32_t>(body.size()));
  s.push_back(static_cast<char>(t));
  return s + body;
}

std::string RingBody(uint64_t size) {
  std::string s;
  PutU64(s, size);
  return s;
}

std::string RingPayloadBody(int64_t id, uint64_t total, uint64_t position, uint64_t ready = UINT64_MAX) {
  std::string s;
  PutU64(s, static_cast<uint64_t>(id));
  PutU64(s, total);
  PutU64(s, position);
  PutU64(s, ready == UINT64_MAX ? total : ready);
  return s;
}

// Writes `bytes` to `sock`, with file descriptor `fd` (SCM_RIGHTS) unless it is -1.
void SendWithFd(int sock, const std::string& bytes, int fd) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  REQUIRE(::sendmsg(sock, &msg, 0) == static_cast<ssize_t>(bytes.size()));
}

}  // namespace

TEST_CASE("a RING frame's memory travels with it; RING_PAYLOADs are read from there and given back") {
  int socks[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, socks) == 0);
  constexpr uint64_t kSize = 1 << 16;
  int memory = RingMemory(kSize);
  auto* mapped = static_cast<char*>(
      ::mmap(nullptr, kRingHeaderBytes + kSize, PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0));
  REQUIRE(mapped != MAP_FAILED);
  char* ring = mapped + kRingHeaderBytes;
  PayloadSink sink(4);
  sink.released = reinterpret_cast<const uint64_t*>(mapped);
  FrontendStream fs(3, &sink);
  FrameBuffer frames;

  SendWithFd(socks[0], Frame(FrameType::kHello, HelloBody()) + Frame(FrameType::kStrings, Strings({"aten::relu", ""})),
             -1);
  SendWithFd(socks[0], Frame(FrameType::kRing, RingBody(kSize)), memory);
  ::close(memory);  // the genie side holds its own descriptor
  std::memcpy(ring, "aaaabbbb", 8);
  std::memcpy(ring + 8, "cc", 2);
  std::memcpy(ring + kSize - 6, "dddddd", 6);  // the last bytes of the ring
  SendWithFd(socks[0],
             Frame(FrameType::kRingPayload, RingPayloadBody(0, 8, 0)) +
                 Frame(FrameType::kRingPayload, RingPayloadBody(1, 2, 8)) +
                 Frame(FrameType::kRingPayload, RingPayloadBody(2, 6, kSize - 6)),
             -1);
  while (!sink.released || __atomic_load_n(sink.released, __ATOMIC_ACQUIRE) < kSize) {
    REQUIRE(frames.ReadFrom(socks[1]) > 0);
    REQUIRE(frames.Drain(&fs).ok());
  }
  // Above the sink's size: transient, as an INPUT_PAYLOAD's; below it: hashed, single-use.
  REQUIRE(sink.transient.size() == 2);
  REQUIRE(sink.transient[0] == std::make_pair(ContentHash::Transient(3, 0), std::string("aaaabbbb")));
  REQUIRE(sink.transient[1] == std::make_pair(ContentHash::Transient(3, 1), std::string("dddddd")));
  REQUIRE(sink.hashed.size() == 1);
  REQUIRE(sink.hashed[0].first == ContentHash::Of("cc", 2));
  REQUIRE(sink.single_use_hashed == std::vector<bool>{true});
  REQUIRE(sink.released_during_view == std::vector<uint64_t>{0, 10});
  REQUIRE(*sink.released == kSize);

  SECTION("the next payload starts at the ring's start again: the bytes there are the new ones") {
    std::memcpy(ring, "eeeeeeee", 8);
    SendWithFd(socks[0], Frame(FrameType::kRingPayload, RingPayloadBody(3, 8, kSize)), -1);
    REQUIRE(frames.ReadFrom(socks[1]) > 0);
    REQUIRE(frames.Drain(&fs).ok());
    REQUIRE(sink.transient.back().second == "eeeeeeee");
    REQUIRE(*sink.released == kSize + 8);
  }
  SECTION("a payload announced in pieces reaches the sink piece by piece and is given back after the last") {
    std::memcpy(ring, "ffff", 4);
    SendWithFd(socks[0], Frame(FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 4)), -1);
    REQUIRE(frames.ReadFrom(socks[1]) > 0);
    REQUIRE(frames.Drain(&fs).ok());
    std::memcpy(ring + 4, "gggggg", 6);
    SendWithFd(socks[0],
               Frame(FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 7)) +
                   Frame(FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 10)),
               -1);
    while (*sink.released < kSize + 10) {
      REQUIRE(frames.ReadFrom(socks[1]) > 0);
      REQUIRE(frames.Drain(&fs).ok());
    }
    REQUIRE(sink.pieces == std::vector<uint64_t>{8, 6, 4, 7, 10});
    REQUIRE(sink.released_during_view == std::vector<uint64_t>{0, 10, kSize, kSize, kSize});
    REQUIRE(sink.transient.back() == std::make_pair(ContentHash::Transient(3, 2), std::string("ffffgggggg")));
    // The segment that follows names it by payload id 3.
    REQUIRE(Feed(fs, FrameType::kRingPayload, RingPayloadBody(4, 8, kSize + 16)).ok());
    REQUIRE(sink.transient.back().first == ContentHash::Transient(3, 3));
  }
  SECTION("pieces out of order, or another frame between them, are refused") {
    REQUIRE(Feed(fs, FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 4)).ok());
    std::string why;
    SECTION("fewer bytes ready than before") { why = Feed(fs, FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 3)).message(); }
    SECTION("more than the payload") { why = Feed(fs, FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 11)).message(); }
    SECTION("another position") { why = Feed(fs, FrameType::kRingPayload, RingPayloadBody(3, 10, kSize + 1, 8)).message(); }
    SECTION("another payload") { why = Feed(fs, FrameType::kRingPayload, RingPayloadBody(4, 10, kSize + 16)).message(); }
    SECTION("a segment") {
      why = Feed(fs, FrameType::kSegment, SegmentBody(kReluWords)).message();
      REQUIRE(why.find("between the pieces") != std::string::npos);
    }
    REQUIRE_FALSE(why.empty());
  }
  SECTION("a payload with no bytes ready is refused") {
    REQUIRE(Feed(fs, FrameType::kRingPayload, RingPayloadBody(3, 10, kSize, 0)).code() == Status::Code::kCorruption);
  }
  SECTION("a position before the last payload's end, or bytes past the ring's end, are refused") {
    auto feed = [&](uint64_t total, uint64_t position) {
      return Feed(fs, FrameType::kRingPayload, RingPayloadBody(3, total, position));
    };
    REQUIRE(feed(8, kSize - 8).code() == Status::Code::kCorruption);     // before what was given back
    REQUIRE(feed(8, 2 * kSize - 4).code() == Status::Code::kCorruption); // would wrap
    REQUIRE(feed(kSize + 1, 2 * kSize).code() == Status::Code::kCorruption);
    REQUIRE(feed(8, UINT64_MAX - 4).code() == Status::Code::kCorruption);
  }
  SECTION("a second RING is refused") {
    SendWithFd(socks[0], Frame(FrameType::kRing, RingBody(kSize)), RingMemory(kSize));
    REQUIRE(frames.ReadFrom(socks[1]) > 0);
    Status st = frames.Drain(&fs);
    REQUIRE(st.code() == Status::Code::kCorruption);
    REQUIRE(st.message().find("second RING") != std::string::npos);
  }
  ::munmap(mapped, kRingHeaderBytes + kSize);
  ::close(socks[0]);
  ::close(socks[1]);
}

TEST_CASE("a trace keeps a RING_PAYLOAD that came in pieces as the payload of its bytes") {
  Fixture f;
  FrontendStream fs(0, f.writer.get());
  constexpr uint64_t kSize = 1 << 16;
  int memory = RingMemory(kSize);
  auto* mapped = static_cast<char*>(
      ::mmap(nullptr, kRingHeaderBytes + kSize, PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0));
  REQUIRE(mapped != MAP_FAILED);
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  REQUIRE(Feed(fs, FrameType::kStrings, Strings({"aten::relu", ""})).ok());
  fs.ReceiveFd(memory);
  REQUIRE(Feed(fs, FrameType::kRing, RingBody(kSize)).ok());
  char* ring = mapped + kRingHeaderBytes;
  std::memcpy(ring + 100, "aaaa", 4);
  REQUIRE(Feed(fs, FrameType::kRingPayload, RingPayloadBody(0, 8, 100, 4)).ok());
  std::memcpy(ring + 104, "bbbb", 4);
  REQUIRE(Feed(fs, FrameType::kRingPayload, RingPayloadBody(0, 8, 100, 8)).ok());
  REQUIRE(*reinterpret_cast<const uint64_t*>(mapped) == 108);
  std::memcpy(ring + 100, "zzzzzzzz", 8);  // the frontend reuses the space: the trace has its copy
  REQUIRE(Feed(fs, FrameType::kSegment, SegmentBody(kReluWords)).ok());
  REQUIRE(*FirstSegment(f).steps[0].input.payload == ContentHash::Of("aaaabbbb", 8));
  ::munmap(mapped, kRingHeaderBytes + kSize);
}

TEST_CASE("a RING frame whose memory is missing, unsealed or too small is refused") {
  PayloadSink sink(4);
  FrontendStream fs(0, &sink);
  REQUIRE(Feed(fs, FrameType::kHello, HelloBody()).ok());
  auto ring = [&](int fd, uint64_t size) {
    if (fd >= 0) fs.ReceiveFd(fd);
    return Feed(fs, FrameType::kRing, RingBody(size));
  };
  std::string why;
  SECTION("none passed") { why = ring(-1, 4096).message(); }
  SECTION("not sealed against shrinking: the frontend could cut it under the mapping") {
    why = ring(RingMemory(4096, false), 4096).message();
    REQUIRE(why.find("not sealed") != std::string::npos);
  }
  SECTION("smaller than the ring it announces") { why = ring(RingMemory(4096), 8192).message(); }
  SECTION("a ring of no bytes") { why = ring(RingMemory(4096), 0).message(); }
  SECTION("a RING_PAYLOAD before any RING") {
    why = Feed(fs, FrameType::kRingPayload, RingPayloadBody(0, 8, 0)).message();
    REQUIRE(why.find("before RING") != std::string::npos);
  }
  REQUIRE_FALSE(why.empty());
  REQUIRE(why.find("RING") != std::string::npos);
  REQUIRE(sink.transient.empty());
}

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "tests/catch.h"
#include "tests/temp_dir.h"
#include "traces/prefetching_reader.h"
#include "traces/trace_dump.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

using namespace genie;
using namespace genie::traces;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

TraceHeader FixedHeader() {
  TraceHeader h;
  h.fields = {{"genie_version", "test"}, {"command", "python3 model.py"}, {"created", "2026-01-01T00:00:00Z"}};
  return h;
}

// Writes a small deterministic trace: two segments of a relu graph, a payload
// shared by both, and a clean end record.
void WriteSample(const std::string& path, bool finish = true) {
  auto w = TraceWriter::Create(path, FixedHeader());
  REQUIRE(w.ok());
  TraceWriter& tw = *w.value();
  std::string bytes(64, '\x01');
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  for (int s = 0; s < 2; ++s) {
    REQUIRE(tw.AddPayload(h, bytes.data(), bytes.size()).ok());
    Segment seg;
    seg.index = s;
    ValueId base = 10 * s;
    Step in;
    in.kind = Step::Kind::kInput;
    in.input.id = base;
    in.input.meta.sizes = {16};
    in.input.meta.strides = {1};
    in.input.meta.storage = base;
    in.input.payload = h;
    Step relu;
    relu.op.schema = tw.strings().Intern("aten::relu");
    relu.op.module = tw.strings().Intern("Net.act");
    relu.op.phase = Phase::kForward;
    relu.op.args = {Arg::Tensor(base)};
    Output o;
    o.id = base + 1;
    o.meta = in.input.meta;
    o.meta.storage = base + 1;
    relu.op.outputs = {o};
    seg.steps = {in, relu};
    Materialization m;
    m.id = base + 1;
    m.payload = h;
    seg.materialized = {m};
    REQUIRE(tw.AddSegment(seg).ok());
  }
  if (finish) {
    TraceFooter f;
    f.capture_ns = 42;
    REQUIRE(tw.Finish(f).ok());
  }
}

Status ReadAll(const std::string& path, uint64_t* segments = nullptr) {
  GENIE_ASSIGN_OR_RETURN(auto r, TraceReader::Open(path));
  Segment seg;
  uint64_t n = 0;
  while (true) {
    GENIE_ASSIGN_OR_RETURN(bool more, r->Next(&seg));
    if (!more) break;
    ++n;
  }
  if (segments) *segments = n;
  return Status::OK();
}

}  // namespace

TEST_CASE("a written trace reads back with its header, segments, payload and end record") {
  testing::TempDir dir;
  std::string path = dir.File("t.gtrace");
  WriteSample(path);
  auto r = TraceReader::Open(path);
  REQUIRE(r.ok());
  REQUIRE(r.value()->header().Get("command") == "python3 model.py");
  std::string payload;
  r.value()->set_payload_callback([&](const ContentHash&, uint64_t, uint64_t, std::string_view b) {
    payload.append(b);
    return Status::OK();
  });
  Segment seg;
  int n = 0;
  while (true) {
    auto more = r.value()->Next(&seg);
    REQUIRE(more.ok());
    if (!more.value()) break;
    REQUIRE(r.value()->strings().Get(seg.steps[1].op.schema) == "aten::relu");
    ++n;
  }
  REQUIRE(n == 2);
  REQUIRE(payload == std::string(64, '\x01'));  // stored once although added twice
  const TraceFooter& f = *r.value()->footer();
  REQUIRE(f.segments == 2);
  REQUIRE(f.ops == 2);
  REQUIRE(f.payloads == 1);
  REQUIRE(f.capture_ns == 42);
  REQUIRE_FALSE(f.truncated);
}

TEST_CASE("the trace format's bytes match the checked-in golden trace") {
  // Fails when an encoding changes by accident. After an intended change of
  // the format, bump kTraceFormatVersion and regenerate with
  // GENIE_UPDATE_GOLDEN=1 build/tests/traces_test.
  testing::TempDir dir;
  std::string path = dir.File("t.gtrace");
  WriteSample(path);
  std::string golden = std::string(std::getenv("GENIE_SOURCE_DIR") ? std::getenv("GENIE_SOURCE_DIR") : ".") +
                       "/tests/golden/format/v1.gtrace";
  if (std::getenv("GENIE_UPDATE_GOLDEN")) WriteFile(golden, ReadFile(path));
  std::string want = ReadFile(golden);
  REQUIRE(!want.empty());
  REQUIRE(ReadFile(path) == want);
  // And the golden file stays readable.
  uint64_t n = 0;
  REQUIRE(ReadAll(golden, &n).ok());
  REQUIRE(n == 2);
}

TEST_CASE("the canonical dump leaves out what varies between recordings") {
  testing::TempDir dir;
  WriteSample(dir.File("t.gtrace"));
  auto r = TraceReader::Open(dir.File("t.gtrace"));
  REQUIRE(r.ok());
  std::ostringstream out;
  REQUIRE(DumpTrace(r.value().get(), DumpFormat::kText, out).ok());
  std::string text = out.str();
  REQUIRE(text.find("created") == std::string::npos);
  REQUIRE(text.find("%1 = aten::relu(%0) : float32[16]  # Net.act forward") != std::string::npos);
  // Segment 1's values are renumbered after segment 0's, ids 10/11 become %2/%3.
  REQUIRE(text.find("%3 = aten::relu(%2)") != std::string::npos);
  REQUIRE(text.find("materialize %3 cpu payload") != std::string::npos);
}

TEST_CASE("a file that is not a trace is refused as such") {
  testing::TempDir dir;
  WriteFile(dir.File("x.gtrace"), "this is a text file, not a trace\n");
  Status st = ReadAll(dir.File("x.gtrace"));
  REQUIRE(st.code() == Status::Code::kInvalidArgument);
  REQUIRE(st.message().find("not a Genie trace") != std::string::npos);
}

TEST_CASE("a missing trace is NotFound naming the path") {
  Status st = ReadAll("/nonexistent/dir/t.gtrace");
  REQUIRE(st.code() == Status::Code::kNotFound);
  REQUIRE(st.message().find("/nonexistent/dir/t.gtrace") != std::string::npos);
}

TEST_CASE("a trace from a newer format version asks for an upgrade") {
  testing::TempDir dir;
  WriteSample(dir.File("t.gtrace"));
  std::string bytes = ReadFile(dir.File("t.gtrace"));
  bytes[8] = 2;  // the format version follows the 8 magic bytes
  WriteFile(dir.File("t.gtrace"), bytes);
  Status st = ReadAll(dir.File("t.gtrace"));
  REQUIRE(st.code() == Status::Code::kUnsupported);
  REQUIRE(st.message().find("version 2 is newer") != std::string::npos);
}

TEST_CASE("a trace cut anywhere is reported truncated or corrupt, never read as complete") {
  testing::TempDir dir;
  WriteSample(dir.File("t.gtrace"));
  std::string bytes = ReadFile(dir.File("t.gtrace"));
  for (size_t n = 0; n < bytes.size(); ++n) {
    WriteFile(dir.File("cut.gtrace"), bytes.substr(0, n));
    Status st = ReadAll(dir.File("cut.gtrace"));
    INFO("cut at " << n);
    REQUIRE_FALSE(st.ok());
  }
  // Cut at a chunk boundary (the end record dropped), the message says truncated.
  auto r = TraceReader::Open(dir.File("t.gtrace"));
  REQUIRE(ReadAll(dir.File("t.gtrace")).ok());
  size_t end_record = bytes.size();
  // The end record is the last chunk: a 20-byte header and its body.
  for (size_t n = bytes.size() - 20; n > 0; --n) {
    if (bytes.compare(n, 4, "GCHK") == 0) {
      end_record = n;
      break;
    }
  }
  WriteFile(dir.File("cut.gtrace"), bytes.substr(0, end_record));
  Status st = ReadAll(dir.File("cut.gtrace"));
  REQUIRE(st.message().find("truncated") != std::string::npos);
  REQUIRE(st.message().find("2 intact segments") != std::string::npos);
}

TEST_CASE("a flipped byte anywhere is detected") {
  testing::TempDir dir;
  WriteSample(dir.File("t.gtrace"));
  std::string bytes = ReadFile(dir.File("t.gtrace"));
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x10;
    WriteFile(dir.File("bad.gtrace"), bad);
    INFO("byte " << i);
    REQUIRE_FALSE(ReadAll(dir.File("bad.gtrace")).ok());
  }
}

TEST_CASE("a payload larger than a chunk is split and reassembled") {
  testing::TempDir dir;
  std::string path = dir.File("big.gtrace");
  std::string big(9u << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 13);
  ContentHash h = ContentHash::Of(big.data(), big.size());
  {
    auto w = TraceWriter::Create(path, FixedHeader());
    REQUIRE(w.ok());
    REQUIRE(w.value()->AddPayload(h, big.data(), big.size()).ok());
    REQUIRE(w.value()->Finish(TraceFooter()).ok());
  }
  auto r = TraceReader::Open(path);
  REQUIRE(r.ok());
  std::string got(big.size(), '\0');
  int pieces = 0;
  r.value()->set_payload_callback([&](const ContentHash& ph, uint64_t total, uint64_t offset, std::string_view b) {
    REQUIRE(ph == h);
    REQUIRE(total == big.size());
    got.replace(offset, b.size(), b);
    ++pieces;
    return Status::OK();
  });
  Segment seg;
  auto more = r.value()->Next(&seg);
  REQUIRE(more.ok());
  REQUIRE_FALSE(more.value());
  REQUIRE(pieces == 3);
  REQUIRE(got == big);
}

TEST_CASE("the prefetching reader returns what the plain reader does, strings and errors included") {
  testing::TempDir dir;
  std::string path = dir.File("t.gtrace");
  WriteSample(path);
  auto plain = TraceReader::Open(path);
  auto ahead = PrefetchingReader::Open(path, 1);
  REQUIRE(plain.ok());
  REQUIRE(ahead.ok());
  REQUIRE(ahead.value()->header().Get("command") == "python3 model.py");
  Segment a, b;
  int n = 0;
  while (true) {
    auto more_a = plain.value()->Next(&a);
    auto more_b = ahead.value()->Next(&b);
    REQUIRE(more_a.ok());
    REQUIRE(more_b.ok());
    REQUIRE(more_a.value() == more_b.value());
    if (!more_a.value()) break;
    ++n;
    REQUIRE(a.fingerprint == b.fingerprint);
    REQUIRE(a.steps.size() == b.steps.size());
    REQUIRE(ahead.value()->strings().Get(b.steps[1].op.schema) == "aten::relu");
  }
  REQUIRE(n == 2);
  REQUIRE(ahead.value()->footer().has_value());
  REQUIRE(ahead.value()->footer()->capture_ns == 42);

  // A trace cut before its end record: the segments before, then the reader's error.
  WriteSample(dir.File("open.gtrace"), false);
  auto cut = PrefetchingReader::Open(dir.File("open.gtrace"));
  REQUIRE(cut.ok());
  Result<bool> more = true;
  int read = 0;
  while (more.ok() && more.value()) {
    more = cut.value()->Next(&b);
    if (more.ok() && more.value()) ++read;
  }
  REQUIRE_FALSE(more.ok());
  REQUIRE(more.status().message().find("truncated") != std::string::npos);
  // Dropping a reader mid-trace stops its thread.
  auto dropped = PrefetchingReader::Open(path, 1);
  REQUIRE(dropped.ok());
}

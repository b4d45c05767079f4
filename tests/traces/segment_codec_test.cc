#include "traces/segment_codec.h"

#include "tests/catch.h"
#include "tests/traces/contiguous_meta.h"

using namespace genie;
using namespace genie::traces;

namespace {

TensorMeta Meta(DType d, std::vector<int64_t> sizes, ValueId storage) {
  return testing::ContiguousMeta(d, std::move(sizes), storage);
}

// A segment like a training step: a weight from an earlier segment (id 3), an
// input with a payload, a matmul, a transposed view, an in-place add, a scalar
// result and a materialization.
Segment Sample(StringTable& st, ValueId base, uint8_t payload_byte, int64_t batch = 8) {
  Segment seg;
  seg.stream = 0;
  seg.index = 7;
  seg.duration_ns = 1234;
  Step in;
  in.kind = Step::Kind::kInput;
  in.input.id = base;
  in.input.kind = Input::Kind::kTensor;
  in.input.meta = Meta(DType::kFloat32, {batch, 4}, base);
  ContentHash h;
  h.bytes.fill(payload_byte);
  in.input.payload = h;
  seg.steps.push_back(in);

  Step mm;
  mm.op.schema = st.Intern("aten::mm");
  mm.op.module = st.Intern("Net.fc");
  mm.op.phase = Phase::kForward;
  mm.op.args = {Arg::Tensor(base), Arg::Tensor(3)};
  Output o;
  o.id = base + 1;
  o.meta = Meta(DType::kFloat32, {batch, 2}, base + 1);
  mm.op.outputs = {o};
  seg.steps.push_back(mm);

  Step t;
  t.op.schema = st.Intern("aten::t");
  t.op.module = st.Intern("");
  t.op.args = {Arg::Tensor(base + 1)};
  Output ot;
  ot.id = base + 2;
  ot.meta = Meta(DType::kFloat32, {2, batch}, base + 1);
  ot.meta.strides = {1, 2};
  ot.meta.storage = base + 1;
  t.op.outputs = {ot};
  seg.steps.push_back(t);

  Step add;
  add.op.schema = st.Intern("aten::add_.Tensor");
  add.op.module = st.Intern("");
  add.op.phase = Phase::kOptimizer;
  add.op.flags = Op::kRandom;
  Arg list;
  list.kind = Arg::Kind::kList;
  list.list = {Arg::Int(-5), Arg::None(), Arg::Bool(true), Arg::Str(Arg::Kind::kDevice, st.Intern("remote_accelerator"))};
  Arg dtype;
  dtype.kind = Arg::Kind::kDType;
  dtype.i = static_cast<int64_t>(DType::kBFloat16);
  add.op.args = {Arg::Tensor(base + 1), Arg::Float(0.25), list};
  add.op.kwargs = {{st.Intern("dtype"), dtype}, {st.Intern("reduce"), Arg::Str(Arg::Kind::kString, st.Intern("mean"))}};
  Output oa;
  oa.id = base + 3;
  oa.meta = Meta(DType::kFloat32, {batch, 2}, base + 1);
  oa.payload = h;  // a random op's recorded result
  Output scalar;
  scalar.is_tensor = false;
  scalar.scalar = Arg::Float(payload_byte * 0.5);
  add.op.outputs = {oa, scalar};
  seg.steps.push_back(add);

  Materialization m;
  m.id = base + 3;
  m.how = Materialization::How::kItem;
  m.payload = h;
  seg.materialized = {m};
  return seg;
}

Segment RoundTrip(const Segment& seg, const StringTable& st) {
  ByteWriter w;
  REQUIRE(EncodeSegment(seg, &w).ok());
  ByteReader r(w.buffer());
  Segment out;
  Status s = DecodeSegment(&r, st, &out);
  INFO(s.message());
  REQUIRE(s.ok());
  REQUIRE(r.done());
  return out;
}

}  // namespace

TEST_CASE("a segment survives encoding and decoding unchanged") {
  StringTable st;
  Segment seg = Sample(st, 100, 1);
  Segment out = RoundTrip(seg, st);
  REQUIRE(out.stream == seg.stream);
  REQUIRE(out.index == 7);
  REQUIRE(out.duration_ns == 1234);
  REQUIRE(out.steps.size() == 4);
  REQUIRE(out.steps[0].input.id == 100);
  REQUIRE(out.steps[0].input.payload == seg.steps[0].input.payload);
  REQUIRE(out.steps[1].op.args[1].tensor == 3);  // a value from an earlier segment
  REQUIRE(out.steps[2].op.outputs[0].meta.strides == std::vector<int64_t>{1, 2});
  REQUIRE(out.steps[2].op.outputs[0].meta.storage == 101);
  const Op& add = out.steps[3].op;
  REQUIRE(st.Get(add.schema) == "aten::add_.Tensor");
  REQUIRE(add.phase == Phase::kOptimizer);
  REQUIRE(add.flags == Op::kRandom);
  REQUIRE(add.args[1].f == 0.25);
  REQUIRE(add.args[2].list[0].i == -5);
  REQUIRE(add.args[2].list[1].kind == Arg::Kind::kNone);
  REQUIRE(st.Get(static_cast<StringId>(add.args[2].list[3].i)) == "remote_accelerator");
  REQUIRE(static_cast<DType>(add.kwargs[0].second.i) == DType::kBFloat16);
  REQUIRE(st.Get(add.kwargs[1].first) == "reduce");
  REQUIRE(add.outputs[0].payload == seg.steps[0].input.payload);
  REQUIRE(!add.outputs[1].is_tensor);
  REQUIRE(add.outputs[1].scalar.f == 0.5);
  REQUIRE(out.materialized[0].id == 103);
  REQUIRE(out.materialized[0].how == Materialization::How::kItem);
}

TEST_CASE("repetitions of one graph share a fingerprint whatever their ids, payloads and results") {
  StringTable st;
  Segment a = RoundTrip(Sample(st, 100, 1), st);
  Segment b = RoundTrip(Sample(st, 5000, 9), st);
  REQUIRE(a.fingerprint == b.fingerprint);
  Segment c = RoundTrip(Sample(st, 100, 1, /*batch=*/16), st);
  REQUIRE(a.fingerprint != c.fingerprint);
}

TEST_CASE("a segment whose values are not numbered consecutively is refused") {
  StringTable st;
  Segment seg = Sample(st, 100, 1);
  seg.steps[1].op.outputs[0].id = 150;
  ByteWriter w;
  Status s = EncodeSegment(seg, &w);
  REQUIRE(s.code() == Status::Code::kInvalidArgument);
}

TEST_CASE("a decoded record with an unknown string id is corruption, not a crash") {
  StringTable st;
  Segment seg = Sample(st, 100, 1);
  ByteWriter w;
  REQUIRE(EncodeSegment(seg, &w).ok());
  StringTable fewer;
  fewer.Intern("aten::mm");
  ByteReader r(w.buffer());
  Segment out;
  Status s = DecodeSegment(&r, fewer, &out);
  REQUIRE(s.code() == Status::Code::kCorruption);
}

TEST_CASE("every truncation of a record fails cleanly") {
  StringTable st;
  ByteWriter w;
  REQUIRE(EncodeSegment(Sample(st, 100, 1), &w).ok());
  for (size_t n = 0; n < w.size(); ++n) {
    ByteReader r(w.buffer().data(), n);
    Segment out;
    REQUIRE_FALSE(DecodeSegment(&r, st, &out).ok());
  }
}

TEST_CASE("a segment that only reads earlier values (a second .cpu()) encodes") {
  StringTable st;
  Segment seg;
  Materialization m;
  m.id = 1;
  seg.materialized = {m};
  Segment out = RoundTrip(seg, st);
  REQUIRE(out.materialized.size() == 1);
  REQUIRE(out.materialized[0].id == 1);
}

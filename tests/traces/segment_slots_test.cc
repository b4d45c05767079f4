#include "traces/segment_slots.h"

#include "tests/catch.h"
#include "tests/traces/contiguous_meta.h"
#include "traces/segment_codec.h"

using namespace genie;
using namespace genie::traces;

namespace {

TensorMeta Contiguous(std::vector<int64_t> sizes, ValueId storage) {
  return testing::ContiguousMeta(DType::kFloat32, std::move(sizes), storage);
}

// Decode step `t` of a toy decoder: a token input, the cached keys of the
// previous step (value `past`) concatenated with the new key into T = t + 1
// positions, a scaled score against a weight (value 3), a materialization.
Segment DecodeStep(StringTable& st, int64_t t, ValueId base, ValueId past, uint8_t token, float scale = 0.125f) {
  Segment seg;
  seg.index = static_cast<uint64_t>(t);
  traces::Step in;
  in.kind = traces::Step::Kind::kInput;
  in.input.id = base;
  in.input.meta = Contiguous({1, 1}, base);
  in.input.meta.dtype = DType::kInt64;
  ContentHash h;
  h.bytes.fill(token);
  in.input.payload = h;
  seg.steps.push_back(in);

  traces::Step emb;
  emb.op.schema = st.Intern("aten::embedding");
  emb.op.args = {Arg::Tensor(3), Arg::Tensor(base)};
  Output e;
  e.id = base + 1;
  e.meta = Contiguous({1, 1, 8}, base + 1);
  emb.op.outputs = {e};
  seg.steps.push_back(emb);

  traces::Step cat;
  cat.op.schema = st.Intern("aten::cat");
  Arg list;
  list.kind = Arg::Kind::kList;
  list.list = {Arg::Tensor(past), Arg::Tensor(base + 1)};
  cat.op.args = {list, Arg::Int(1)};
  Output c;
  c.id = base + 2;
  c.meta = Contiguous({1, t + 1, 8}, base + 2);
  cat.op.outputs = {c};
  seg.steps.push_back(cat);

  traces::Step mul;
  mul.op.schema = st.Intern("aten::mul.Scalar");
  mul.op.args = {Arg::Tensor(base + 2), Arg::Float(scale)};
  Output m;
  m.id = base + 3;
  m.meta = Contiguous({1, t + 1, 8}, base + 3);
  mul.op.outputs = {m};
  seg.steps.push_back(mul);

  Materialization mat;
  mat.id = base + 3;
  mat.how = Materialization::How::kCpu;
  seg.materialized = {mat};
  return seg;
}

std::string Record(const Segment& seg) {
  ByteWriter w;
  REQUIRE(EncodeSegment(seg, &w).ok());
  return w.buffer();
}

}  // namespace

TEST_CASE("decode steps with other ids, lengths and tokens share a skeleton") {
  StringTable st;
  SegmentSlots a, b;
  Flatten(DecodeStep(st, 5, 100, 90, 1), &a);
  Flatten(DecodeStep(st, 6, 104, 102, 2), &b);
  REQUIRE(a.skeleton == b.skeleton);
  REQUIRE(a.ints.size() == b.ints.size());
  REQUIRE(a.ints != b.ints);
  REQUIRE(a.hashes.size() == 1);
  REQUIRE(a.hashes != b.hashes);
}

TEST_CASE("a float argument is a slot, as its bits: an optimizer's step sizes change at every step") {
  StringTable st;
  SegmentSlots base, other;
  Flatten(DecodeStep(st, 5, 100, 90, 1), &base);
  Flatten(DecodeStep(st, 5, 100, 90, 1, 0.25f), &other);
  REQUIRE(other.skeleton == base.skeleton);
  REQUIRE(other.ints.size() == base.ints.size());
  REQUIRE(other.ints != base.ints);
  // The template given the other's slots has the other's float, bit for bit.
  Segment tmpl = DecodeStep(st, 5, 100, 90, 1);
  REQUIRE(Assign(other.ints, other.hashes, &tmpl).ok());
  Segment want = DecodeStep(st, 5, 100, 90, 1, 0.25f);
  SegmentSlots again;
  Flatten(tmpl, &again);
  REQUIRE(again.ints == other.ints);
  REQUIRE(Fingerprint(tmpl).value() == Fingerprint(want).value());
  REQUIRE(Fingerprint(tmpl).value() != Fingerprint(DecodeStep(st, 5, 100, 90, 1)).value());
}

TEST_CASE("another op or rank makes another skeleton") {
  StringTable st;
  SegmentSlots base, other;
  Flatten(DecodeStep(st, 5, 100, 90, 1), &base);

  Segment seg = DecodeStep(st, 5, 100, 90, 1);
  seg.steps[3].op.schema = st.Intern("aten::div.Scalar");
  Flatten(seg, &other);
  REQUIRE(other.skeleton != base.skeleton);

  seg = DecodeStep(st, 5, 100, 90, 1);
  seg.steps[1].op.outputs[0].meta = Contiguous({1, 8}, 101);
  Flatten(seg, &other);
  REQUIRE(other.skeleton != base.skeleton);
}

TEST_CASE("a template given another step's slots becomes that step, record for record") {
  StringTable st;
  Segment tmpl = DecodeStep(st, 5, 100, 90, 1);
  Segment next = DecodeStep(st, 9, 140, 130, 7);
  SegmentSlots slots;
  Flatten(next, &slots);
  REQUIRE(Assign(slots.ints, slots.hashes, &tmpl).ok());
  REQUIRE(Record(tmpl) == Record(next));
  REQUIRE(Fingerprint(tmpl).value() == Fingerprint(next).value());
  REQUIRE(Fingerprint(tmpl).value() != Fingerprint(DecodeStep(st, 5, 100, 90, 1)).value());  // T is structure

  slots.ints.pop_back();
  Status st_short = Assign(slots.ints, slots.hashes, &tmpl);
  REQUIRE(st_short.code() == Status::Code::kInvalidArgument);
}

TEST_CASE("steady decode steps are predicted exactly, so they cost no bytes") {
  StringTable st;
  std::vector<SegmentSlots> steps(6);
  for (int t = 0; t < 6; ++t)
    Flatten(DecodeStep(st, 5 + t, 100 + 4 * t, 96 + 4 * t + 2, 1), &steps[t]);
  SlotPredictor sender(steps[0].ints), receiver(steps[0].ints);
  for (int t = 1; t < 6; ++t) {
    ByteWriter diffs;
    sender.Encode(steps[t].ints, &diffs);
    if (t >= 2) REQUIRE(diffs.size() == 0);  // two seen: ids, index and T extrapolate
    else REQUIRE(diffs.size() > 0);
    std::vector<int64_t> got;
    REQUIRE(receiver.Decode(diffs.buffer(), &got).ok());
    REQUIRE(got == steps[t].ints);
  }

  SECTION("the step after the next is predicted as exactly, for a loop run two steps ahead") {
    SegmentSlots next, after;
    Flatten(DecodeStep(st, 11, 124, 96 + 4 * 6 + 2, 1), &next);
    Flatten(DecodeStep(st, 12, 128, 96 + 4 * 7 + 2, 1), &after);
    REQUIRE(receiver.Prediction() == next.ints);
    REQUIRE(receiver.Prediction(2) == after.ints);
    REQUIRE(receiver.Prediction(1) == receiver.Prediction());
  }

  SECTION("a step off the line costs only the slots that moved") {
    SegmentSlots odd;
    Flatten(DecodeStep(st, 11, 124 + 50, 96 + 4 * 6 + 2, 1), &odd);
    ByteWriter diffs;
    sender.Encode(odd.ints, &diffs);
    REQUIRE(diffs.size() > 0);
    REQUIRE(diffs.size() < 4 * odd.ints.size());
    std::vector<int64_t> got;
    REQUIRE(receiver.Decode(diffs.buffer(), &got).ok());
    REQUIRE(got == odd.ints);
  }

  SECTION("a malformed difference list is refused and changes nothing") {
    ByteWriter bad;
    bad.Varint(steps[0].ints.size());  // past the end
    bad.SVarint(1);
    std::vector<int64_t> got;
    REQUIRE(receiver.Decode(bad.buffer(), &got).code() == Status::Code::kCorruption);
    std::string truncated("\x80", 1);
    REQUIRE(receiver.Decode(truncated, &got).code() == Status::Code::kCorruption);
    SegmentSlots seventh;
    Flatten(DecodeStep(st, 11, 124, 96 + 4 * 6 + 2, 1), &seventh);
    ByteWriter diffs;
    sender.Encode(seventh.ints, &diffs);
    REQUIRE(receiver.Decode(diffs.buffer(), &got).ok());
    REQUIRE(got == seventh.ints);
  }
}

TEST_CASE("the ids a step releases are predicted from the step's first value") {
  // Each step defines 4 values from base 100 + 4t and drops two of the step before.
  auto dropped = [](uint64_t t) { return std::vector<uint64_t>{96 + 4 * t + 1, 96 + 4 * t + 3}; };
  ReleasePredictor sender(dropped(0), 100), receiver(dropped(0), 100);
  auto step = [&](const std::vector<uint64_t>& ids, uint64_t base) {
    ByteWriter w;
    sender.Encode(ids, base, &w);
    std::vector<uint64_t> got;
    REQUIRE(receiver.Decode(w.buffer(), base, &got).ok());
    REQUIRE(got == ids);
    return w.size();
  };
  REQUIRE(step(dropped(1), 104) == 0);
  REQUIRE(step(dropped(2), 108) == 0);

  SECTION("a step that drops more costs its list once; going back to the usual list costs its length") {
    std::vector<uint64_t> more = dropped(3);
    more.push_back(7);
    REQUIRE(step(more, 112) > 2);
    REQUIRE(step(dropped(4), 116) == 1);
    REQUIRE(step(dropped(5), 120) == 0);
    more = dropped(6);
    more.push_back(7);
    REQUIRE(step(more, 124) > 1);  // 7 is not where the last longer list predicts it
    more = dropped(7);
    more.push_back(11);  // where 7 was, relative to the base
    REQUIRE(step(more, 128) == 0);  // the longer list again, moved along
  }

  SECTION("a step that drops nothing costs one byte") {
    REQUIRE(step({}, 112) == 1);
    REQUIRE(step(dropped(4), 116) == 1);
    REQUIRE(step(dropped(5), 120) == 0);
  }

  SECTION("a malformed list is refused") {
    std::vector<uint64_t> got;
    ByteWriter huge;
    huge.Varint(1u << 30);  // a new length far longer than its bytes
    REQUIRE(receiver.Decode(huge.buffer(), 112, &got).code() == Status::Code::kCorruption);
    ByteWriter past;
    past.Varint(2);
    past.Varint(5);
    past.SVarint(1);
    REQUIRE(receiver.Decode(past.buffer(), 112, &got).code() == Status::Code::kCorruption);
    REQUIRE(step(dropped(3), 112) == 0);  // nothing changed
  }
}

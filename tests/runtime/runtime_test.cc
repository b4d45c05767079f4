#include "runtime/executor/runtime.h"
#include "runtime/executor/host_arena.h"

#include <cstring>
#include <optional>

#include "tests/catch.h"

using namespace genie;
using namespace genie::traces;

namespace {

TensorMeta Vec(int64_t n, ValueId id) {
  TensorMeta m;
  m.dtype = DType::kFloat32;
  m.sizes = {n};
  m.strides = {1};
  m.storage = id;
  return m;
}

std::string Floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.begin(), s.size());
  return s;
}

// %0 = input; %1 = aten::mul.Tensor(%0, 3); %2 = aten::add_.Tensor(%1, %0, alpha=2)
Segment MulAdd(StringTable& st, const ContentHash& h, int64_t n = 3) {
  Segment seg;
  Step in;
  in.kind = Step::Kind::kInput;
  in.input.id = 0;
  in.input.meta = Vec(n, 0);
  in.input.payload = h;
  Step mul;
  mul.op.schema = st.Intern("aten::mul.Tensor");
  mul.op.args = {Arg::Tensor(0), Arg::Int(3)};
  Output o;
  o.id = 1;
  o.meta = Vec(n, 1);
  mul.op.outputs = {o};
  Step add;
  add.op.schema = st.Intern("aten::add_.Tensor");
  add.op.args = {Arg::Tensor(1), Arg::Tensor(0)};
  add.op.kwargs = {{st.Intern("alpha"), Arg::Int(2)}};
  Output o2;
  o2.id = 2;
  o2.meta = Vec(n, 1);
  add.op.outputs = {o2};
  seg.steps = {in, mul, add};
  return seg;
}

}  // namespace

TEST_CASE("ops run by schema name through the dispatcher, keyword arguments and defaults included") {
  auto rt = runtime::Runtime::Create("cpu", 0);
  REQUIRE(rt.ok());
  std::string bytes = Floats({1, 2, 3});
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  uint64_t session = rt.value()->OpenSession();
  REQUIRE(rt.value()->PutBlob(session, h, bytes).value());
  StringTable st;
  Segment seg = MulAdd(st, h);
  REQUIRE(rt.value()->Check(seg, st).ok());
  auto res = rt.value()->Execute(session, seg, st, {2, 0});
  INFO(res.status().message());
  REQUIRE(res.ok());
  REQUIRE(res->fetched.size() == 2);
  REQUIRE(res->fetched[0].bytes == Floats({5, 10, 15}));  // 3x + 2x
  // The input was copied from the blob: the in-place add left the blob's bytes alone.
  REQUIRE(res->fetched[1].bytes == Floats({1, 2, 3}));
  rt.value()->CloseSession(session);
}

// One op of `schema` on `args`, defining `out` with storage `storage`.
Step OneOp(StringTable& st, const char* schema, std::vector<Arg> args, ValueId out, ValueId storage) {
  Step s;
  s.op.schema = st.Intern(schema);
  s.op.args = std::move(args);
  Output o;
  o.id = out;
  o.meta = Vec(3, storage);
  s.op.outputs = {o};
  return s;
}

TEST_CASE("a fetch is answered before its segment runs only when the segment cannot change it") {
  auto rt = runtime::Runtime::Create("cpu", 0);
  REQUIRE(rt.ok());
  runtime::Runtime& r = *rt.value();
  std::string bytes = Floats({1, 2, 3});
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  uint64_t session = r.OpenSession();
  REQUIRE(r.PutBlob(session, h, bytes).value());
  StringTable st;
  // %0 = input; %1 = %0 * 3; %2 = %1.add_(%0, alpha=2): %1 and %2 share a storage.
  REQUIRE(r.Execute(session, MulAdd(st, h), st, {}).ok());

  Segment other;  // %3 = %0.mul_(2): writes only the input's storage
  other.steps = {OneOp(st, "aten::mul_.Tensor", {Arg::Tensor(0), Arg::Int(2)}, 3, 0)};
  auto early = r.FetchBefore(session, other, st, {2});
  REQUIRE(early.has_value());
  REQUIRE(early->size() == 1);
  REQUIRE((*early)[0].bytes == Floats({5, 10, 15}));
  REQUIRE(r.FetchBefore(session, other, st, {}) == std::nullopt);  // nothing to fetch

  Segment same;  // %3 = %1.mul_(2): the older version of %2, the same storage
  same.steps = {OneOp(st, "aten::mul_.Tensor", {Arg::Tensor(1), Arg::Int(2)}, 3, 1)};
  REQUIRE(r.FetchBefore(session, same, st, {2}) == std::nullopt);

  Arg sizes;
  sizes.kind = Arg::Kind::kList;
  sizes.list = {Arg::Int(3)};
  Segment view;  // %3 = %2.view([3]); %4 = %3.mul_(2): through a view the segment makes
  view.steps = {OneOp(st, "aten::view", {Arg::Tensor(2), sizes}, 3, 1),
                OneOp(st, "aten::mul_.Tensor", {Arg::Tensor(3), Arg::Int(2)}, 4, 1)};
  REQUIRE(r.FetchBefore(session, view, st, {2}) == std::nullopt);
  view.steps.pop_back();  // the view alone writes nothing
  REQUIRE(r.FetchBefore(session, view, st, {2}).has_value());

  Segment own;  // %3 = %2 * 2; %4 = %3.mul_(2): a storage the segment made
  own.steps = {OneOp(st, "aten::mul.Tensor", {Arg::Tensor(2), Arg::Int(2)}, 3, 3),
               OneOp(st, "aten::mul_.Tensor", {Arg::Tensor(3), Arg::Int(2)}, 4, 3)};
  REQUIRE(r.FetchBefore(session, own, st, {2}).has_value());
  REQUIRE(r.FetchBefore(session, own, st, {3}) == std::nullopt);  // defined by the segment
  REQUIRE(r.FetchBefore(session, own, st, {7}) == std::nullopt);  // not held
  r.CloseSession(session);
}

TEST_CASE("an op missing from this LibTorch is named with the torch version before anything runs") {
  auto rt = runtime::Runtime::Create("cpu", 0);
  REQUIRE(rt.ok());
  StringTable st;
  Segment seg;
  Step op;
  op.op.schema = st.Intern("aten::frobnicate.default");
  seg.steps = {op};
  Status s = rt.value()->Check(seg, st);
  REQUIRE(s.code() == Status::Code::kUnsupported);
  REQUIRE(s.message().find("aten::frobnicate.default") != std::string::npos);
  REQUIRE(s.message().find(rt.value()->torch_version()) != std::string::npos);
}

TEST_CASE("a blob whose bytes do not match its hash is never used, and is named") {
  auto rt = runtime::Runtime::Create("cpu", 0);
  REQUIRE(rt.ok());
  // 3 floats are hashed as they are stored; 20,000 (80 KB) on a thread of their own.
  for (int64_t n : {int64_t{3}, int64_t{20000}}) {
    INFO(n << " floats");
    std::string good(static_cast<size_t>(n) * 4, '\0');
    for (int64_t i = 0; i < n; ++i) {
      float v = static_cast<float>(i % 97);
      std::memcpy(good.data() + 4 * i, &v, 4);
    }
    ContentHash h = ContentHash::Of(good.data(), good.size());
    std::string damaged = good;
    damaged[damaged.size() - 1] ^= 0x40;
    uint64_t session = rt.value()->OpenSession();
    REQUIRE(rt.value()->PutBlob(session, h, damaged).ok());
    StringTable st;
    auto res = rt.value()->Execute(session, MulAdd(st, h, n), st, {2});
    REQUIRE_FALSE(res.ok());
    REQUIRE(res.status().message().find("failed its hash check") != std::string::npos);
    REQUIRE(res.status().message().find(h.Hex(16)) != std::string::npos);
    // Found damaged, it counts as absent (a client uploads it again), though
    // the session pins it; uploaded again, intact, it takes the damaged copy's place and runs.
    REQUIRE_FALSE(rt.value()->HasBlob(session, h));
    auto stored = rt.value()->PutBlob(session, h, good);
    REQUIRE(stored.ok());
    REQUIRE(stored.value());
    res = rt.value()->Execute(session, MulAdd(st, h, n), st, {2});
    INFO(res.status().message());
    REQUIRE(res.ok());
    rt.value()->CloseSession(session);
  }
}

TEST_CASE("the memory limit evicts the least recently used blob no session pins") {
  auto rt = runtime::Runtime::Create("cpu", 10);
  REQUIRE(rt.ok());
  auto& r = *rt.value();
  uint64_t a = r.OpenSession();
  ContentHash h1 = ContentHash::Of("aaaaaa", 6), h2 = ContentHash::Of("bbbbbb", 6);
  REQUIRE(r.PutBlob(a, h1, "aaaaaa").ok());
  // h1 is pinned by the open session: no room for h2.
  REQUIRE_FALSE(r.PutBlob(r.OpenSession(), h2, "bbbbbb").ok());
  r.CloseSession(a);
  REQUIRE(r.PutBlob(r.OpenSession(), h2, "bbbbbb").ok());
  REQUIRE_FALSE(r.HasBlob(0, h1));
  REQUIRE(r.stats().evictions == 1);
}

TEST_CASE("a transient payload is taken by the one input that names it, and counts against the limit until then") {
  auto rt = runtime::Runtime::Create("cpu", 64);
  REQUIRE(rt.ok());
  auto& r = *rt.value();
  uint64_t session = r.OpenSession();
  std::string bytes = Floats({1, 2, 3});
  ContentHash name = ContentHash::Transient(1, 0);
  REQUIRE(r.PutTransient(session, name, runtime::BlobBuffer::Copy(bytes)).ok());
  REQUIRE(r.stats().blob_bytes == 12);
  REQUIRE(r.stats().blobs == 0);  // nothing shared, nothing another session could ask for
  REQUIRE_FALSE(r.HasBlob(session, name));
  StringTable st;
  Segment seg = MulAdd(st, name);
  auto res = r.Execute(session, seg, st, {2, 0});
  INFO(res.status().message());
  REQUIRE(res.ok());
  REQUIRE(res->fetched[0].bytes == Floats({5, 10, 15}));
  REQUIRE(res->fetched[1].bytes == Floats({1, 2, 3}));
  REQUIRE(r.stats().blob_bytes == 0);  // taken: the input holds the bytes now
  // Named again, it is gone.
  auto again = r.Execute(session, MulAdd(st, name), st, {0});
  REQUIRE_FALSE(again.ok());
  REQUIRE(again.status().message().find("transient payload") != std::string::npos);

  // The limit (64 bytes) counts those not taken yet: five of 12 bytes fit, a sixth does not.
  for (uint64_t i = 1; i <= 5; ++i)
    REQUIRE(r.PutTransient(session, ContentHash::Transient(1, i), runtime::BlobBuffer::Copy(bytes)).ok());
  Status full = r.PutTransient(session, ContentHash::Transient(1, 6), runtime::BlobBuffer::Copy(bytes));
  REQUIRE_FALSE(full.ok());
  REQUIRE(full.message().find("memory limit") != std::string::npos);
  // One the wrong size is refused by the input, and freed all the same.
  Segment big = MulAdd(st, ContentHash::Transient(1, 1), 4);
  auto wrong = r.Execute(session, big, st, {0});
  REQUIRE_FALSE(wrong.ok());
  REQUIRE(wrong.status().message().find("the tensor needs 16") != std::string::npos);
  REQUIRE(r.stats().blob_bytes == 48);
  // The session's close frees the rest.
  r.CloseSession(session);
  REQUIRE(r.stats().blob_bytes == 0);
  uint64_t other = r.OpenSession();
  REQUIRE(r.PutTransient(other, ContentHash::Transient(2, 0), runtime::BlobBuffer::Copy(std::string(64, 'x'))).ok());
  REQUIRE_FALSE(r.PutTransient(123456, ContentHash::Transient(2, 1), runtime::BlobBuffer::Copy(bytes)).ok());
}

TEST_CASE("a held payload binds inputs of its session while a hold lasts, and counts against the limit") {
  auto rt = runtime::Runtime::Create("cpu", 64);
  REQUIRE(rt.ok());
  auto& r = *rt.value();
  uint64_t session = r.OpenSession(), other = r.OpenSession();
  std::string bytes = Floats({1, 2, 3});
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  REQUIRE(r.HoldPayload(session, h, bytes).ok());
  REQUIRE(r.HoldPayload(session, h, bytes).ok());  // a second slot names it: no second copy
  REQUIRE(r.stats().blob_bytes == 12);
  REQUIRE(r.stats().blobs == 0);  // not in the shared cache
  REQUIRE_FALSE(r.HasBlob(other, h));
  StringTable st;
  for (int run = 0; run < 2; ++run) {  // bound as often as asked, a copy each time
    auto res = r.Execute(session, MulAdd(st, h), st, {2});
    INFO(res.status().message());
    REQUIRE(res.ok());
    REQUIRE(res->fetched[0].bytes == Floats({5, 10, 15}));
  }
  // Another session does not see it.
  auto elsewhere = r.Execute(other, MulAdd(st, h), st, {2});
  REQUIRE_FALSE(elsewhere.ok());
  REQUIRE(elsewhere.status().message().find("is not on this runtime") != std::string::npos);
  // The wrong size is refused.
  auto wrong = r.Execute(session, MulAdd(st, h, 4), st, {2});
  REQUIRE_FALSE(wrong.ok());
  REQUIRE(wrong.status().message().find("the tensor needs 16") != std::string::npos);
  // The bytes go with the last hold.
  r.ReleasePayload(session, h);
  REQUIRE(r.stats().blob_bytes == 12);
  r.ReleasePayload(session, h);
  REQUIRE(r.stats().blob_bytes == 0);
  REQUIRE_FALSE(r.Execute(session, MulAdd(st, h), st, {2}).ok());
  r.ReleasePayload(session, h);  // no hold left: nothing happens
  // The limit (64 bytes) counts them: five of 12 bytes fit, a sixth does not.
  std::vector<ContentHash> held;
  for (float i = 1; i <= 5; ++i) {
    std::string b = Floats({i, i, i});
    held.push_back(ContentHash::Of(b.data(), b.size()));
    REQUIRE(r.HoldPayload(session, held.back(), b).ok());
  }
  std::string sixth = Floats({6, 6, 6});
  Status full = r.HoldPayload(session, ContentHash::Of(sixth.data(), sixth.size()), sixth);
  REQUIRE_FALSE(full.ok());
  REQUIRE(full.message().find("memory limit") != std::string::npos);
  // The session's close frees them.
  r.CloseSession(session);
  REQUIRE(r.stats().blob_bytes == 0);
  REQUIRE_FALSE(r.HoldPayload(session, h, bytes).ok());  // closed: no such session
}

TEST_CASE("a session pins a blob once however often it uses it") {
  auto rt = runtime::Runtime::Create("cpu", 24);
  REQUIRE(rt.ok());
  auto& r = *rt.value();
  uint64_t session = r.OpenSession();
  std::string bytes = Floats({1, 2, 3});
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  REQUIRE(r.PutBlob(session, h, bytes).ok());
  StringTable st;
  for (int run = 0; run < 3; ++run) {
    REQUIRE(r.HasBlob(session, h));
    REQUIRE(r.Execute(session, MulAdd(st, h), st, {2}).ok());
  }
  // One close unpins it: another session's blob evicts it.
  r.CloseSession(session);
  std::string other = Floats({4, 5, 6});
  REQUIRE(r.PutBlob(r.OpenSession(), ContentHash::Of(other.data(), other.size()), other).ok());
  std::string third = Floats({7, 8, 9});
  REQUIRE(r.PutBlob(r.OpenSession(), ContentHash::Of(third.data(), third.size()), third).ok());
  REQUIRE(r.stats().evictions == 1);
  REQUIRE_FALSE(r.HasBlob(0, h));
}

TEST_CASE("an unknown device is a clear error") {
  auto rt = runtime::Runtime::Create("tpu:3", 0);
  REQUIRE_FALSE(rt.ok());
  REQUIRE(rt.status().message().find("tpu:3") != std::string::npos);
}

TEST_CASE("the host arena hands out blocks and coalesces them when freed") {
  runtime::HostArena arena(4 * 4096);
  REQUIRE(arena.capacity() == 4 * 4096);
  char* a = arena.Allocate(4096);
  char* b = arena.Allocate(100);  // rounded up to a page
  char* c = arena.Allocate(2 * 4096);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  REQUIRE(c != nullptr);
  REQUIRE(arena.Allocate(1) == nullptr);  // full
  arena.Free(b);
  arena.Free(a);
  REQUIRE(arena.free_bytes() == 2 * 4096);
  // The two freed neighbours coalesced into one block of two pages.
  char* d = arena.Allocate(2 * 4096);
  REQUIRE(d == a);
  arena.Free(c);
  arena.Free(d);
  REQUIRE(arena.free_bytes() == 4 * 4096);
}

TEST_CASE("blobs received into the arena return their memory when evicted") {
  auto rt = runtime::Runtime::Create("cpu", 64 * 1024);
  REQUIRE(rt.ok());
  auto& r = *rt.value();
  for (int i = 0; i < 8; ++i) {
    std::string bytes(40 * 1024, static_cast<char>('a' + i));
    ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
    runtime::BlobBuffer buf = r.AllocateBlob(bytes.size());
    std::memcpy(buf.data.get(), bytes.data(), bytes.size());
    uint64_t s = r.OpenSession();
    REQUIRE(r.PutBlob(s, h, std::move(buf)).ok());
    r.CloseSession(s);
  }
  // Each new 40 KB blob evicted the previous one within the 64 KB limit.
  REQUIRE(r.stats().blobs == 1);
  REQUIRE(r.stats().evictions == 7);
}

TEST_CASE("a freed upload buffer is handed out again for the next of its size, up to the cache's limit") {
  auto cache = std::make_shared<runtime::BufferCache>(3u << 20);
  constexpr size_t kOne = 1u << 20, kTwo = 2u << 20;
  std::shared_ptr<char[]> a = cache->Take(kOne);
  REQUIRE(a != nullptr);
  char* first = a.get();
  a[kOne - 1] = 'x';  // writable to its end
  a.reset();
  REQUIRE(cache->free_bytes() == kOne);
  std::shared_ptr<char[]> again = cache->Take(kOne);
  REQUIRE(again.get() == first);  // the same mapping, its pages already in
  REQUIRE(cache->free_bytes() == 0);
  std::shared_ptr<char[]> other = cache->Take(kTwo);  // another size: a new one
  REQUIRE(other.get() != first);
  std::shared_ptr<char[]> third = cache->Take(kTwo);
  again.reset();
  other.reset();
  REQUIRE(cache->free_bytes() == 3u << 20);
  third.reset();  // past the limit: unmapped, not kept
  REQUIRE(cache->free_bytes() == 3u << 20);
  // A buffer may outlive its cache.
  std::shared_ptr<char[]> late = cache->Take(kTwo);
  cache.reset();
  late[0] = 'y';
  late.reset();
}

namespace {

// genie::manual_seed(seed) (unless seed is absent), then
// %1 = aten::normal.Tensor_float(%0, 1.0) on the input %0 (zeros).
Segment SeededNormal(StringTable& st, const ContentHash& zeros, std::optional<int64_t> seed) {
  Segment seg;
  Step in;
  in.kind = Step::Kind::kInput;
  in.input.id = 0;
  in.input.meta = Vec(3, 0);
  in.input.payload = zeros;
  seg.steps.push_back(in);
  if (seed) {
    Step s;
    s.op.schema = st.Intern("genie::manual_seed");
    s.op.flags = Op::kRandom;
    s.op.args = {Arg::Int(*seed)};
    seg.steps.push_back(s);
  }
  Step normal = OneOp(st, "aten::normal.Tensor_float", {Arg::Tensor(0), Arg::Float(1.0)}, 1, 1);
  normal.op.flags = Op::kRandom;
  seg.steps.push_back(normal);
  return seg;
}

}  // namespace

TEST_CASE("a session's random ops draw from a generator of its own, seeded by genie::manual_seed") {
  auto rt = runtime::Runtime::Create("cpu", 0);
  REQUIRE(rt.ok());
  std::string bytes = Floats({0, 0, 0});
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  StringTable st;
  auto open = [&] {
    uint64_t s = rt.value()->OpenSession();
    REQUIRE(rt.value()->PutBlob(s, h, bytes).ok());  // stored by the first, pinned by the others
    return s;
  };
  auto draw = [&](uint64_t session, std::optional<int64_t> seed) {
    auto res = rt.value()->Execute(session, SeededNormal(st, h, seed), st, {1});
    INFO(res.status().message());
    REQUIRE(res.ok());
    return res->fetched[0].bytes;
  };
  uint64_t a = open(), b = open(), c = open();
  std::string a1 = draw(a, 7);
  std::string unseeded = draw(b, std::nullopt);
  std::string a2 = draw(a, std::nullopt);
  REQUIRE(a1 != a2);               // the generator goes on
  REQUIRE(draw(a, 7) == a1);       // and the seed starts it again
  REQUIRE(draw(c, std::nullopt) == unseeded);  // b's draws and a's left c's alone: torch's default seed
  REQUIRE(draw(b, -3) != a1);
  Segment bad = SeededNormal(st, h, 7);
  bad.steps[1].op.args.push_back(Arg::Int(1));
  auto res = rt.value()->Execute(a, bad, st, {1});
  REQUIRE(!res.ok());
  REQUIRE(res.status().message().find("genie::manual_seed takes one integer") != std::string::npos);
  for (uint64_t s : {a, b, c}) rt.value()->CloseSession(s);
}

#include "recorder/frontend_protocol.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/byte_io.h"
#include "traces/segment_codec.h"

namespace genie::recorder {
namespace {

using traces::Arg;
using traces::Phase;
using traces::Step;

Status ReadStrings(const uint8_t* body, size_t n, std::vector<std::string>* out) {
  ByteReader in(body, n);
  uint32_t count;
  GENIE_RETURN_IF_ERROR(in.U32(&count));
  if (count > n / 4) return Status::Corruption("string count " + std::to_string(count) + " exceeds the frame");
  out->resize(count);
  for (auto& s : *out) {
    uint32_t len;
    const uint8_t* p;
    GENIE_RETURN_IF_ERROR(in.U32(&len));
    GENIE_RETURN_IF_ERROR(in.Skip(len, &p));
    s.assign(reinterpret_cast<const char*>(p), len);
  }
  if (!in.done()) return Status::Corruption("string frame has trailing bytes");
  return Status::OK();
}

// Reads the i64 word stream of a SEGMENT frame, checking every index.
class Words {
 public:
  Words(const int64_t* w, size_t n, const double* f, size_t nf) : w_(w), n_(n), f_(f), nf_(nf) {}

  Status Next(int64_t* v) {
    if (pos_ >= n_) return Status::Corruption("segment words end inside a step");
    *v = w_[pos_++];
    return Status::OK();
  }
  Status Count(uint64_t* v, uint64_t limit, const char* what) {
    int64_t x;
    GENIE_RETURN_IF_ERROR(Next(&x));
    if (x < 0 || static_cast<uint64_t>(x) > limit) return Status::Corruption(std::string(what) + " out of range");
    *v = static_cast<uint64_t>(x);
    return Status::OK();
  }
  Status Float(double* v) {
    uint64_t i;
    GENIE_RETURN_IF_ERROR(Count(&i, nf_ ? nf_ - 1 : 0, "float index"));
    if (i >= nf_) return Status::Corruption("float index out of range");
    *v = f_[i];
    return Status::OK();
  }
  bool done() const { return pos_ == n_; }
  size_t remaining() const { return n_ - pos_; }

 private:
  const int64_t* w_;
  size_t n_;
  const double* f_;
  size_t nf_;
  size_t pos_ = 0;
};

}  // namespace

Status FrontendStream::HandleFrame(FrameType type, const uint8_t* body, size_t n) {
  if (!has_hello_ && type != FrameType::kHello) return Status::Corruption("first frame is not HELLO");
  if (ended_) return Status::Corruption("frame after END");
  if (piece_.ready > 0 && type != FrameType::kRingPayload)
    return Status::Corruption("a frame between the pieces of a RING_PAYLOAD");
  switch (type) {
    case FrameType::kHello: return HandleHello(body, n);
    case FrameType::kStrings: return HandleStrings(body, n);
    case FrameType::kSegment: return HandleSegment(body, n, FrameType::kSegment);
    case FrameType::kPart: return HandleSegment(body, n, FrameType::kPart);
    case FrameType::kAnswered: return HandleSegment(body, n, FrameType::kAnswered);
    case FrameType::kPayload: return HandlePayload(body, n, false);
    case FrameType::kInputPayload: return HandlePayload(body, n, true);
    case FrameType::kRing: return HandleRing(body, n);
    case FrameType::kRingPayload: return HandleRingPayload(body, n);
    case FrameType::kTemplate: return HandleTemplate(body, n);
    case FrameType::kWrites: return HandleWrites(body, n);
    case FrameType::kEnd:
      if (n != 0) return Status::Corruption("END frame has a body");
      if (!partial_payload_.empty()) return Status::Corruption("END arrived inside a payload");
      ended_ = true;
      return Status::OK();
    case FrameType::kReply: return Status::Corruption("a REPLY frame from the frontend");
    case FrameType::kEarly: return Status::Corruption("an EARLY frame from the frontend");
  }
  return Status::Corruption("unknown frame type " + std::to_string(static_cast<int>(type)));
}

FrontendStream::~FrontendStream() {
  if (fd_ >= 0) ::close(fd_);
  if (ring_) ::munmap(ring_, kRingHeaderBytes + ring_size_);
}

void FrontendStream::ReceiveFd(int fd) {
  if (fd_ >= 0 || ring_) {
    ::close(fd);
    return;
  }
  fd_ = fd;
}

Status FrontendStream::HandleRing(const uint8_t* body, size_t n) {
  ByteReader in(body, n);
  uint64_t size;
  GENIE_RETURN_IF_ERROR(in.U64(&size));
  if (!in.done()) return Status::Corruption("RING frame has trailing bytes");
  if (ring_) return Status::Corruption("a second RING frame");
  if (fd_ < 0) return Status::Corruption("RING frame came without its memory (no file descriptor passed with it)");
  const int fd = std::exchange(fd_, -1);
  auto fail = [fd](const std::string& why) {
    ::close(fd);
    return Status::Corruption("RING frame: " + why);
  };
  if (size == 0 || size > kMaxRingBytes) return fail("a ring of " + std::to_string(size) + " bytes");
  // The frontend could otherwise shrink the memory under the mapping, and a read past its end is a SIGBUS here.
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) return fail("its memory is not sealed against shrinking");
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < kRingHeaderBytes + size)
    return fail("its memory is smaller than the ring");
  void* p = ::mmap(nullptr, kRingHeaderBytes + size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return Status::IOError(std::string("cannot map the frontend's ring: ") + std::strerror(errno));
  ring_ = static_cast<char*>(p);
  ring_size_ = size;
  return Status::OK();
}

Status FrontendStream::HandleRingPayload(const uint8_t* body, size_t n) {
  ByteReader in(body, n);
  int64_t id;
  uint64_t total, position, ready;
  GENIE_RETURN_IF_ERROR(in.U64(reinterpret_cast<uint64_t*>(&id)));
  GENIE_RETURN_IF_ERROR(in.U64(&total));
  GENIE_RETURN_IF_ERROR(in.U64(&position));
  GENIE_RETURN_IF_ERROR(in.U64(&ready));
  if (!in.done()) return Status::Corruption("RING_PAYLOAD frame has trailing bytes");
  if (!ring_) return Status::Corruption("RING_PAYLOAD before RING");
  if (piece_.ready > 0) {
    if (id != piece_.id || total != piece_.total || position != piece_.position || ready <= piece_.ready ||
        ready > total)
      return Status::Corruption("RING_PAYLOAD pieces out of order");
  } else {
    if (id != static_cast<int64_t>(payloads_.size())) return Status::Corruption("payload ids out of order");
    if (!partial_payload_.empty()) return Status::Corruption("RING_PAYLOAD inside another payload");
    if (position < ring_next_ || total > ring_size_ || position > UINT64_MAX - total ||
        position % ring_size_ + total > ring_size_)
      return Status::Corruption("RING_PAYLOAD names bytes outside the ring");
    if (ready == 0 || ready > total) return Status::Corruption("RING_PAYLOAD has " + std::to_string(ready) +
                                                               " of " + std::to_string(total) + " bytes ready");
    piece_.id = id;
    piece_.total = total;
    piece_.position = position;
    piece_.transient = sink_->TakesTransient(total);
    if (piece_.transient) piece_.name = ContentHash::Transient(stream_, transients_++);
  }
  piece_.ready = ready;
  std::string_view bytes(ring_ + kRingHeaderBytes + position % ring_size_, total);
  Status st;
  if (piece_.transient) {
    st = sink_->AddTransientView(piece_.name, bytes, ready);
  } else if (ready == total) {
    piece_.name = ContentHash::Of(bytes.data(), bytes.size());
    st = sink_->AddPayload(piece_.name, std::string(bytes), true);
  }
  if (ready < total) return st;
  payloads_.push_back(piece_.name);
  piece_ = RingPiece();
  // Done with the bytes: the frontend may write over them.
  ring_next_ = position + total;
  __atomic_store_n(reinterpret_cast<uint64_t*>(ring_), ring_next_, __ATOMIC_RELEASE);
  return st;
}

Status FrontendStream::HandleHello(const uint8_t* body, size_t n) {
  if (has_hello_) return Status::Corruption("second HELLO");
  std::vector<std::string> f;
  GENIE_RETURN_IF_ERROR(ReadStrings(body, n, &f));
  if (f.size() < 6) return Status::Corruption("HELLO has too few fields");
  hello_.protocol_version = static_cast<uint32_t>(std::strtoul(f[0].c_str(), nullptr, 10));
  if (hello_.protocol_version != kFrontendProtocolVersion)
    return Status::Unsupported("frontend speaks protocol " + f[0] + ", this genie speaks " +
                               std::to_string(kFrontendProtocolVersion));
  hello_.frontend_version = f[1];
  hello_.interpreter = f[2];
  hello_.python_version = f[3];
  hello_.has_torch = f[4] == "yes";
  hello_.pid = std::strtoll(f[5].c_str(), nullptr, 10);
  has_hello_ = true;
  return Status::OK();
}

Status FrontendStream::HandleStrings(const uint8_t* body, size_t n) {
  std::vector<std::string> f;
  GENIE_RETURN_IF_ERROR(ReadStrings(body, n, &f));
  for (const auto& s : f) strings_.push_back(sink_->strings().Intern(s));
  return Status::OK();
}

Status FrontendStream::HandleWrites(const uint8_t* body, size_t n) {
  ByteReader in(body, n);
  uint32_t count;
  GENIE_RETURN_IF_ERROR(in.U32(&count));
  if (static_cast<uint64_t>(count) * 12 != in.remaining())
    return Status::Corruption("WRITES frame holds " + std::to_string(in.remaining()) + " bytes for " +
                              std::to_string(count) + " entries");
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t op, position, name;
    GENIE_RETURN_IF_ERROR(in.U32(&op));
    GENIE_RETURN_IF_ERROR(in.U32(&position));
    GENIE_RETURN_IF_ERROR(in.U32(&name));
    if (op >= strings_.size() || name >= strings_.size())
      return Status::Corruption("WRITES names string " + std::to_string(std::max(op, name)) + " of " +
                                std::to_string(strings_.size()));
    GENIE_RETURN_IF_ERROR(sink_->AddWrite(strings_[op], position, strings_[name]));
  }
  return Status::OK();
}

Status FrontendStream::HandlePayload(const uint8_t* body, size_t n, bool single_use) {
  ByteReader in(body, n);
  int64_t id;
  uint64_t total, offset;
  GENIE_RETURN_IF_ERROR(in.U64(reinterpret_cast<uint64_t*>(&id)));
  GENIE_RETURN_IF_ERROR(in.U64(&total));
  GENIE_RETURN_IF_ERROR(in.U64(&offset));
  if (id != static_cast<int64_t>(payloads_.size())) return Status::Corruption("payload ids out of order");
  if (offset != partial_payload_.size() || (offset == 0 && !partial_payload_.empty()))
    return Status::Corruption("payload pieces out of order");
  if (offset == 0) {
    partial_total_ = total;
    partial_single_use_ = single_use;
  }
  if (total != partial_total_ || in.remaining() > total - offset)
    return Status::Corruption("payload piece exceeds its payload");
  if (single_use != partial_single_use_) return Status::Corruption("payload pieces in frames of two types");
  if (offset == 0) partial_payload_.reserve(total);
  const uint8_t* p;
  size_t len = in.remaining();
  GENIE_RETURN_IF_ERROR(in.Skip(len, &p));
  partial_payload_.append(reinterpret_cast<const char*>(p), len);
  if (partial_payload_.size() < total) return Status::OK();
  std::string bytes;
  bytes.swap(partial_payload_);
  if (single_use && sink_->TakesTransient(bytes.size())) {
    ContentHash name = ContentHash::Transient(stream_, transients_++);
    payloads_.push_back(name);
    return sink_->AddTransient(name, std::move(bytes));
  }
  ContentHash h = ContentHash::Of(bytes.data(), bytes.size());
  payloads_.push_back(h);
  return sink_->AddPayload(h, std::move(bytes), single_use);
}

namespace {

class SegmentTranslator {
 public:
  // `templates`: those RUN steps may name; null inside a template's own records.
  SegmentTranslator(Words* w, const std::vector<traces::StringId>& strings, const std::vector<ContentHash>& payloads,
                    const std::vector<WordTemplate>* templates)
      : w_(*w), strings_(strings), payloads_(payloads), templates_(templates) {}

  Status Sid(traces::StringId* out) {
    uint64_t s;
    GENIE_RETURN_IF_ERROR(w_.Count(&s, strings_.empty() ? 0 : strings_.size() - 1, "string id"));
    if (s >= strings_.size()) return Status::Corruption("string id out of range");
    *out = strings_[s];
    return Status::OK();
  }

  Status Payload(std::optional<ContentHash>* out) {
    int64_t p;
    GENIE_RETURN_IF_ERROR(w_.Next(&p));
    if (p == -1) return Status::OK();
    if (p < 0 || static_cast<size_t>(p) >= payloads_.size()) return Status::Corruption("unknown payload id");
    *out = payloads_[p];
    return Status::OK();
  }

  Status ValueId(traces::ValueId* v) {
    uint64_t x;
    GENIE_RETURN_IF_ERROR(w_.Count(&x, INT64_MAX, "value id"));
    *v = x;
    return Status::OK();
  }

  Status Meta(traces::TensorMeta* m) {
    uint64_t d, rank;
    GENIE_RETURN_IF_ERROR(w_.Count(&d, traces::kNumDTypes - 1, "dtype code"));
    m->dtype = static_cast<traces::DType>(d);
    GENIE_RETURN_IF_ERROR(w_.Count(&rank, traces::CodecLimits::kMaxRank, "tensor rank"));
    m->sizes.resize(rank);
    m->strides.resize(rank);
    for (auto& s : m->sizes) GENIE_RETURN_IF_ERROR(w_.Next(&s));
    for (auto& s : m->strides) GENIE_RETURN_IF_ERROR(w_.Next(&s));
    GENIE_RETURN_IF_ERROR(w_.Next(&m->storage_offset));
    return ValueId(&m->storage);
  }

  Status ArgOf(Arg* a, int depth) {
    if (depth > traces::CodecLimits::kMaxListDepth) return Status::Corruption("argument lists nested too deeply");
    uint64_t kind;
    GENIE_RETURN_IF_ERROR(w_.Count(&kind, static_cast<uint64_t>(Arg::Kind::kMemoryFormat), "argument kind"));
    a->kind = static_cast<Arg::Kind>(kind);
    switch (a->kind) {
      case Arg::Kind::kNone: return Status::OK();
      case Arg::Kind::kBool:
      case Arg::Kind::kInt: return w_.Next(&a->i);
      case Arg::Kind::kFloat: return w_.Float(&a->f);
      case Arg::Kind::kDType: {
        uint64_t d;
        GENIE_RETURN_IF_ERROR(w_.Count(&d, traces::kNumDTypes - 1, "dtype code"));
        a->i = static_cast<int64_t>(d);
        return Status::OK();
      }
      case Arg::Kind::kString:
      case Arg::Kind::kDevice:
      case Arg::Kind::kLayout:
      case Arg::Kind::kMemoryFormat: {
        traces::StringId s;
        GENIE_RETURN_IF_ERROR(Sid(&s));
        a->i = s;
        return Status::OK();
      }
      case Arg::Kind::kTensor: return ValueId(&a->tensor);
      case Arg::Kind::kList: {
        uint64_t n;
        GENIE_RETURN_IF_ERROR(w_.Count(&n, w_.remaining(), "list length"));
        a->list.resize(n);
        for (auto& item : a->list) GENIE_RETURN_IF_ERROR(ArgOf(&item, depth + 1));
        return Status::OK();
      }
    }
    return Status::Corruption("unknown argument kind");
  }

  Status Step(traces::Segment* seg, std::vector<traces::ValueId>* released) {
    int64_t tag;
    GENIE_RETURN_IF_ERROR(w_.Next(&tag));
    if (templates_ == nullptr && tag != 1 && tag != 2)
      return Status::Corruption("a template's records hold a step other than an input or an op");
    if (tag == 5) return Run(seg, released);
    if (tag == 4) {
      uint64_t n;
      GENIE_RETURN_IF_ERROR(w_.Count(&n, w_.remaining(), "release count"));
      for (uint64_t i = 0; i < n; ++i) {
        traces::ValueId v;
        GENIE_RETURN_IF_ERROR(ValueId(&v));
        released->push_back(v);
      }
      return Status::OK();
    }
    if (tag == 1) {
      traces::Step step;
      step.kind = Step::Kind::kInput;
      uint64_t kind;
      GENIE_RETURN_IF_ERROR(ValueId(&step.input.id));
      GENIE_RETURN_IF_ERROR(w_.Count(&kind, 2, "input kind"));
      step.input.kind = static_cast<traces::Input::Kind>(kind);
      GENIE_RETURN_IF_ERROR(Meta(&step.input.meta));
      GENIE_RETURN_IF_ERROR(Payload(&step.input.payload));
      seg->steps.push_back(std::move(step));
      return Status::OK();
    }
    if (tag == 2) {
      traces::Step step;
      step.kind = Step::Kind::kOp;
      traces::Op& op = step.op;
      uint64_t phase, flags, n;
      GENIE_RETURN_IF_ERROR(Sid(&op.schema));
      GENIE_RETURN_IF_ERROR(Sid(&op.module));
      GENIE_RETURN_IF_ERROR(w_.Count(&phase, static_cast<uint64_t>(Phase::kDecode), "phase"));
      op.phase = static_cast<Phase>(phase);
      GENIE_RETURN_IF_ERROR(w_.Count(&flags, 255, "op flags"));
      op.flags = static_cast<uint8_t>(flags);
      GENIE_RETURN_IF_ERROR(w_.Count(&n, w_.remaining(), "argument count"));
      op.args.resize(n);
      for (auto& a : op.args) GENIE_RETURN_IF_ERROR(ArgOf(&a, 0));
      GENIE_RETURN_IF_ERROR(w_.Count(&n, w_.remaining(), "keyword count"));
      op.kwargs.resize(n);
      for (auto& [name, a] : op.kwargs) {
        GENIE_RETURN_IF_ERROR(Sid(&name));
        GENIE_RETURN_IF_ERROR(ArgOf(&a, 0));
      }
      GENIE_RETURN_IF_ERROR(w_.Count(&n, w_.remaining(), "output count"));
      op.outputs.resize(n);
      for (auto& out : op.outputs) {
        uint64_t is_tensor;
        GENIE_RETURN_IF_ERROR(w_.Count(&is_tensor, 1, "output kind"));
        out.is_tensor = is_tensor;
        if (is_tensor) {
          GENIE_RETURN_IF_ERROR(ValueId(&out.id));
          GENIE_RETURN_IF_ERROR(Meta(&out.meta));
          GENIE_RETURN_IF_ERROR(Payload(&out.payload));
        } else {
          GENIE_RETURN_IF_ERROR(ArgOf(&out.scalar, 0));
          if (out.scalar.kind == Arg::Kind::kTensor || out.scalar.kind == Arg::Kind::kList)
            return Status::Corruption("scalar result holds a tensor or list");
        }
      }
      seg->steps.push_back(std::move(step));
      return Status::OK();
    }
    if (tag == 3) {
      traces::Materialization m;
      uint64_t how;
      GENIE_RETURN_IF_ERROR(ValueId(&m.id));
      GENIE_RETURN_IF_ERROR(w_.Count(&how, static_cast<uint64_t>(traces::Materialization::How::kPrint), "materialization kind"));
      m.how = static_cast<traces::Materialization::How>(how);
      GENIE_RETURN_IF_ERROR(Payload(&m.payload));
      seg->materialized.push_back(m);
      return Status::OK();
    }
    return Status::Corruption("unknown step tag " + std::to_string(tag));
  }

 private:
  // A RUN step: its template's records, patched, translated in its place.
  Status Run(traces::Segment* seg, std::vector<traces::ValueId>* released) {
    uint64_t id, base, k, n;
    int64_t t[kMaxTemplateTs];
    GENIE_RETURN_IF_ERROR(w_.Count(&id, templates_->empty() ? 0 : templates_->size() - 1, "template id"));
    if (id >= templates_->size()) return Status::Corruption("a RUN names an unknown template");
    const WordTemplate& tpl = (*templates_)[id];
    GENIE_RETURN_IF_ERROR(ValueId(&base));
    GENIE_RETURN_IF_ERROR(w_.Count(&k, kMaxTemplateTs, "template run T count"));
    if (k < tpl.ts) return Status::Corruption("a RUN gives its template fewer Ts than it reads");
    for (uint64_t i = 0; i < k; ++i) GENIE_RETURN_IF_ERROR(w_.Next(&t[i]));
    GENIE_RETURN_IF_ERROR(w_.Count(&n, w_.remaining() / 2, "template run argument count"));
    if (n < tpl.arguments) return Status::Corruption("a RUN gives its template fewer arguments than it reads");
    std::vector<int64_t> args(2 * n);
    for (auto& a : args) GENIE_RETURN_IF_ERROR(w_.Next(&a));
    std::vector<int64_t> words = tpl.words;
    for (const auto& p : tpl.patches) {
      int64_t& v = words[p.position];
      switch (p.kind) {
        case WordTemplate::Patch::kId:
          if (__builtin_add_overflow(static_cast<int64_t>(base), p.a, &v)) return Status::Corruption("template run value id out of range");
          break;
        case WordTemplate::Patch::kArgumentId: v = args[2 * p.a]; break;
        case WordTemplate::Patch::kArgumentStorage: v = args[2 * p.a + 1]; break;
        case WordTemplate::Patch::kAffine: {
          int64_t at;
          if (__builtin_mul_overflow(p.a, t[0], &at) || __builtin_add_overflow(at, p.b, &v))
            return Status::Corruption("template run integer out of range");
          break;
        }
        case WordTemplate::Patch::kTerm: {
          int64_t at;
          if (__builtin_mul_overflow(p.a, t[p.b], &at) || __builtin_add_overflow(v, at, &v))
            return Status::Corruption("template run integer out of range");
          break;
        }
        case WordTemplate::Patch::kFloat: v = p.a; break;
      }
    }
    Words inner(words.data(), words.size(), tpl.floats.data(), tpl.floats.size());
    SegmentTranslator records(&inner, strings_, payloads_, nullptr);
    while (!inner.done()) GENIE_RETURN_IF_ERROR(records.Step(seg, released));
    return Status::OK();
  }

  Words& w_;
  const std::vector<traces::StringId>& strings_;
  const std::vector<ContentHash>& payloads_;
  const std::vector<WordTemplate>* templates_;
};

}  // namespace

Status FrontendStream::HandleTemplate(const uint8_t* body, size_t n) {
  ByteReader in(body, n);
  uint32_t id, nwords, nfloats, npatches;
  GENIE_RETURN_IF_ERROR(in.U32(&id));
  GENIE_RETURN_IF_ERROR(in.U32(&nwords));
  GENIE_RETURN_IF_ERROR(in.U32(&nfloats));
  GENIE_RETURN_IF_ERROR(in.U32(&npatches));
  if (id != templates_.size()) return Status::Corruption("template ids out of order");
  if (templates_.size() >= kMaxTemplates) return Status::Corruption("more than 65536 templates");
  if (in.remaining() != (static_cast<uint64_t>(nwords) + nfloats + 4ull * npatches) * 8)
    return Status::Corruption("template frame size does not match its word, float and patch counts");
  WordTemplate tpl;
  tpl.words.resize(nwords);
  tpl.floats.resize(nfloats);
  const uint8_t* p;
  GENIE_RETURN_IF_ERROR(in.Skip(nwords * 8ull, &p));
  std::memcpy(tpl.words.data(), p, nwords * 8ull);
  GENIE_RETURN_IF_ERROR(in.Skip(nfloats * 8ull, &p));
  std::memcpy(tpl.floats.data(), p, nfloats * 8ull);
  tpl.patches.resize(npatches);
  for (auto& patch : tpl.patches) {
    int64_t f[4];
    GENIE_RETURN_IF_ERROR(in.Skip(32, &p));
    std::memcpy(f, p, 32);
    if (f[0] < 0 || f[0] >= static_cast<int64_t>(nwords)) return Status::Corruption("template patch position out of range");
    if (f[1] < 0 || f[1] > WordTemplate::Patch::kTerm) return Status::Corruption("unknown template patch kind");
    patch.position = static_cast<uint32_t>(f[0]);
    patch.kind = static_cast<WordTemplate::Patch::Kind>(f[1]);
    patch.a = f[2];
    patch.b = f[3];
    bool argument = patch.kind == WordTemplate::Patch::kArgumentId || patch.kind == WordTemplate::Patch::kArgumentStorage;
    if (argument && (f[2] < 0 || f[2] >= static_cast<int64_t>(kMaxTemplateArguments)))
      return Status::Corruption("template patch argument out of range");
    if (patch.kind == WordTemplate::Patch::kFloat && (f[2] < 0 || f[2] >= static_cast<int64_t>(nfloats)))
      return Status::Corruption("template patch float index out of range");
    if (argument) tpl.arguments = std::max<uint64_t>(tpl.arguments, f[2] + 1);
    if (patch.kind == WordTemplate::Patch::kTerm && (f[3] < 0 || f[3] >= static_cast<int64_t>(kMaxTemplateTs)))
      return Status::Corruption("template patch T out of range");
    if (patch.kind == WordTemplate::Patch::kAffine) tpl.ts = std::max<uint64_t>(tpl.ts, 1);
    if (patch.kind == WordTemplate::Patch::kTerm) tpl.ts = std::max<uint64_t>(tpl.ts, f[3] + 1);
  }
  templates_.push_back(std::move(tpl));
  return Status::OK();
}

Status FrontendStream::HandleSegment(const uint8_t* body, size_t n, FrameType type) {
  ByteReader in(body, n);
  uint64_t duration;
  uint32_t nwords, nfloats;
  GENIE_RETURN_IF_ERROR(in.U64(&duration));
  GENIE_RETURN_IF_ERROR(in.U32(&nwords));
  GENIE_RETURN_IF_ERROR(in.U32(&nfloats));
  if (in.remaining() != static_cast<uint64_t>(nwords) * 8 + static_cast<uint64_t>(nfloats) * 8)
    return Status::Corruption("segment frame size does not match its word and float counts");
  // Copies keep the i64/f64 reads aligned whatever the frame buffer's alignment.
  std::vector<int64_t> words(nwords);
  std::vector<double> floats(nfloats);
  const uint8_t* p;
  GENIE_RETURN_IF_ERROR(in.Skip(nwords * 8ull, &p));
  std::memcpy(words.data(), p, nwords * 8ull);
  GENIE_RETURN_IF_ERROR(in.Skip(nfloats * 8ull, &p));
  std::memcpy(floats.data(), p, nfloats * 8ull);

  traces::Segment seg;
  seg.stream = stream_;
  seg.index = next_segment_;
  seg.duration_ns = duration;
  Words w(words.data(), words.size(), floats.data(), floats.size());
  SegmentTranslator t(&w, strings_, payloads_, &templates_);
  std::vector<traces::ValueId> released;
  while (!w.done()) GENIE_RETURN_IF_ERROR(t.Step(&seg, &released));
  if (type == FrameType::kPart && !seg.materialized.empty()) return Status::Corruption("a PART frame materializes a value");
  if (type == FrameType::kAnswered) {
    if (seg.materialized.size() != 1) return Status::Corruption("an ANSWERED frame materializes other than one value");
    GENIE_RETURN_IF_ERROR(sink_->AddAnswered(seg, released));
  } else {
    GENIE_RETURN_IF_ERROR(sink_->AddSegment(seg, released, type == FrameType::kPart));
  }
  ++next_segment_;
  return Status::OK();
}

std::string EncodeErrorReply(const std::string& message) {
  std::string out;
  uint32_t len = static_cast<uint32_t>(std::min<size_t>(message.size() + 1, kMaxFrameBody));
  out.append(reinterpret_cast<const char*>(&len), 4);
  out.push_back(static_cast<char>(FrameType::kReply));
  out.push_back(1);
  out.append(message, 0, len - 1);
  return out;
}

}  // namespace genie::recorder

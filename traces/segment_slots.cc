#include "traces/segment_slots.h"

#include <cstring>
#include <string>

namespace genie::traces {
namespace {

// One walk over a segment for both directions: Flatten reads a const
// segment, Assign writes a mutable one, so the slot order cannot drift apart.
template <class Seg, class Sink>
class Walker {
 public:
  explicit Walker(Sink* sink) : k_(*sink) {}

  void Segment(Seg& seg) {
    k_.Int(seg.index);
    k_.Tag(seg.stream);
    k_.Tag(seg.steps.size());
    for (auto& step : seg.steps) {
      k_.Tag(static_cast<uint64_t>(step.kind));
      if (step.kind == Step::Kind::kInput) {
        auto& in = step.input;
        k_.Tag(static_cast<uint64_t>(in.kind));
        k_.Int(in.id);
        Meta(in.meta);
        Hash(in.payload);
        continue;
      }
      auto& op = step.op;
      k_.Tag(op.schema);
      k_.Tag(op.module);
      k_.Tag(static_cast<uint64_t>(op.phase));
      k_.Tag(op.flags);
      k_.Tag(op.args.size());
      for (auto& a : op.args) Argument(a);
      k_.Tag(op.kwargs.size());
      for (auto& [name, a] : op.kwargs) {
        k_.Tag(name);
        Argument(a);
      }
      k_.Tag(op.outputs.size());
      for (auto& out : op.outputs) {
        k_.Tag(out.is_tensor);
        if (out.is_tensor) {
          k_.Int(out.id);
          Meta(out.meta);
          Hash(out.payload);
        } else {
          Fixed(out.scalar);
        }
      }
    }
    k_.Tag(seg.materialized.size());
    for (auto& m : seg.materialized) {
      k_.Int(m.id);
      k_.Tag(static_cast<uint64_t>(m.how));
      Hash(m.payload);
    }
  }

 private:
  template <class M>
  void Meta(M& m) {
    k_.Tag(static_cast<uint64_t>(m.dtype));
    k_.Tag(m.sizes.size());
    k_.Tag(m.strides.size());
    for (auto& v : m.sizes) k_.Int(v);
    for (auto& v : m.strides) k_.Int(v);
    k_.Int(m.storage_offset);
    k_.Int(m.storage);
  }

  template <class H>
  void Hash(H& h) {
    k_.Tag(h.has_value());
    if (h) k_.Hash(*h);
  }

  template <class A>
  void Argument(A& a) {
    k_.Tag(static_cast<uint64_t>(a.kind));
    switch (a.kind) {
      case Arg::Kind::kInt: k_.Int(a.i); break;
      case Arg::Kind::kTensor: k_.Int(a.tensor); break;
      // An optimizer's scalars change at every step (Adam's bias corrections).
      case Arg::Kind::kFloat: k_.Float(a.f); break;
      case Arg::Kind::kList:
        k_.Tag(a.list.size());
        for (auto& item : a.list) Argument(item);
        break;
      default: Fixed(a);
    }
  }

  // An argument taken whole into the skeleton (a recorded scalar, a float, a dtype, a string id).
  template <class A>
  void Fixed(A& a) {
    k_.Tag(static_cast<uint64_t>(a.kind));
    k_.Tag(static_cast<uint64_t>(a.i));
    uint64_t bits;
    std::memcpy(&bits, &a.f, 8);
    k_.Tag(bits);
    k_.Tag(a.tensor);
    k_.Tag(a.list.size());
    for (auto& item : a.list) Fixed(item);
  }

  Sink& k_;
};

class Reader {
 public:
  explicit Reader(SegmentSlots* out) : out_(out) {}
  void Tag(uint64_t v) { skeleton_.Varint(v); }
  template <class T>
  void Int(const T& v) {
    out_->ints.push_back(static_cast<int64_t>(v));
  }
  void Float(double f) {
    int64_t bits;
    std::memcpy(&bits, &f, 8);
    out_->ints.push_back(bits);
  }
  void Hash(const ContentHash& h) { out_->hashes.push_back(h); }
  std::string& skeleton() { return skeleton_.buffer(); }

 private:
  SegmentSlots* out_;
  ByteWriter skeleton_;
};

class Writer {
 public:
  Writer(const std::vector<int64_t>& ints, const std::vector<ContentHash>& hashes) : ints_(ints), hashes_(hashes) {}
  void Tag(uint64_t) {}
  template <class T>
  void Int(T& v) {
    if (next_int_ < ints_.size()) v = static_cast<T>(ints_[next_int_]);
    ++next_int_;
  }
  void Float(double& f) {
    if (next_int_ < ints_.size()) std::memcpy(&f, &ints_[next_int_], 8);
    ++next_int_;
  }
  void Hash(ContentHash& h) {
    if (next_hash_ < hashes_.size()) h = hashes_[next_hash_];
    ++next_hash_;
  }
  size_t ints_used() const { return next_int_; }
  size_t hashes_used() const { return next_hash_; }

 private:
  const std::vector<int64_t>& ints_;
  const std::vector<ContentHash>& hashes_;
  size_t next_int_ = 0;
  size_t next_hash_ = 0;
};

// Appends where `actual` differs from `predicted` (as long) as varint pairs:
// positions skipped since the previous difference, zig-zag difference.
void EncodeDifferences(const std::vector<int64_t>& predicted, const std::vector<int64_t>& actual, ByteWriter* out) {
  size_t gap = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] == predicted[i]) {
      ++gap;
      continue;
    }
    out->Varint(gap);
    // Unsigned arithmetic: wraps instead of overflowing on hostile input.
    out->SVarint(static_cast<int64_t>(static_cast<uint64_t>(actual[i]) - static_cast<uint64_t>(predicted[i])));
    gap = 0;
  }
}

// Applies EncodeDifferences' pairs, read from `in` to its end, to `values`;
// Corruption naming `what` when one points past the end.
Status ApplyDifferences(ByteReader* in, std::vector<int64_t>* values, const char* what) {
  size_t pos = 0;
  while (!in->done()) {
    uint64_t gap;
    int64_t d;
    GENIE_RETURN_IF_ERROR(in->Varint(&gap));
    GENIE_RETURN_IF_ERROR(in->SVarint(&d));
    if (gap >= values->size() - pos) return Status::Corruption(std::string("a ") + what + " names a place past the end");
    pos += gap;
    (*values)[pos] = static_cast<int64_t>(static_cast<uint64_t>((*values)[pos]) + static_cast<uint64_t>(d));
    ++pos;
  }
  return Status::OK();
}

}  // namespace

void Flatten(const Segment& seg, SegmentSlots* out) {
  out->ints.clear();
  out->hashes.clear();
  Reader r(out);
  Walker<const Segment, Reader>(&r).Segment(seg);
  out->skeleton = std::move(r.skeleton());
}

Status Assign(const std::vector<int64_t>& ints, const std::vector<ContentHash>& hashes, Segment* seg) {
  Writer w(ints, hashes);
  Walker<Segment, Writer>(&w).Segment(*seg);
  if (w.ints_used() != ints.size() || w.hashes_used() != hashes.size())
    return Status::InvalidArgument("the template has " + std::to_string(w.ints_used()) + " integers and " +
                                   std::to_string(w.hashes_used()) + " hashes, not " + std::to_string(ints.size()) +
                                   " and " + std::to_string(hashes.size()));
  return Status::OK();
}

std::vector<int64_t> SlotPredictor::Prediction(int64_t steps) const {
  if (before_.empty()) return last_;
  std::vector<int64_t> p(last_.size());
  // Unsigned arithmetic: wraps instead of overflowing on hostile input.
  uint64_t k = static_cast<uint64_t>(steps);
  for (size_t i = 0; i < p.size(); ++i) {
    uint64_t l = static_cast<uint64_t>(last_[i]);
    p[i] = static_cast<int64_t>(l + k * (l - static_cast<uint64_t>(before_[i])));
  }
  return p;
}

void SlotPredictor::Encode(const std::vector<int64_t>& next, ByteWriter* out) {
  EncodeDifferences(Prediction(), next, out);
  before_ = std::move(last_);
  last_ = next;
}

Status SlotPredictor::Decode(std::string_view diffs, std::vector<int64_t>* next) {
  std::vector<int64_t> values = Prediction();
  ByteReader in(diffs);
  GENIE_RETURN_IF_ERROR(ApplyDifferences(&in, &values, "template difference"));
  *next = values;
  before_ = std::move(last_);
  last_ = std::move(values);
  return Status::OK();
}

ValueId FirstDefined(const Segment& seg) {
  for (const auto& step : seg.steps) {
    if (step.kind == Step::Kind::kInput) return step.input.id;
    for (const auto& out : step.op.outputs)
      if (out.is_tensor) return out.id;
  }
  return 0;
}

namespace {

std::vector<int64_t> Relative(const std::vector<uint64_t>& ids, uint64_t base) {
  std::vector<int64_t> r(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) r[i] = static_cast<int64_t>(ids[i] - base);
  return r;
}

}  // namespace

ReleasePredictor::ReleasePredictor(const std::vector<uint64_t>& first, uint64_t base) {
  last_length_ = first.size();
  Keep(Relative(first, base));
}

const std::vector<int64_t>& ReleasePredictor::Prediction(size_t n) {
  for (const auto& l : lists_)
    if (l.size() == n) return l;
  zeros_.assign(n, 0);
  return zeros_;
}

void ReleasePredictor::Keep(std::vector<int64_t> relative) {
  for (auto& l : lists_) {
    if (l.size() == relative.size()) {
      l = std::move(relative);
      return;
    }
  }
  if (lists_.size() >= kLengths) lists_.clear();
  lists_.push_back(std::move(relative));
}

void ReleasePredictor::Encode(const std::vector<uint64_t>& ids, uint64_t base, ByteWriter* out) {
  std::vector<int64_t> relative = Relative(ids, base);
  const std::vector<int64_t>& p = Prediction(ids.size());
  if (ids.size() != last_length_ || relative != p) {
    out->Varint(ids.size());
    EncodeDifferences(p, relative, out);
  }
  last_length_ = ids.size();
  Keep(std::move(relative));
}

Status ReleasePredictor::Decode(std::string_view in, uint64_t base, std::vector<uint64_t>* ids) {
  ByteReader r(in);
  uint64_t n = last_length_;
  if (!in.empty()) {
    GENIE_RETURN_IF_ERROR(r.Varint(&n));
    bool known = n == last_length_;
    for (const auto& l : lists_) known = known || l.size() == n;
    // A new length is predicted as zeros, which at most one id (the base itself) matches.
    if (!known && n > r.remaining() + 1) return Status::Corruption("a release list is longer than its encoding allows");
  }
  std::vector<int64_t> relative = Prediction(n);
  GENIE_RETURN_IF_ERROR(ApplyDifferences(&r, &relative, "release difference"));
  ids->resize(n);
  for (size_t i = 0; i < n; ++i) (*ids)[i] = base + static_cast<uint64_t>(relative[i]);
  last_length_ = n;
  Keep(std::move(relative));
  return Status::OK();
}

}  // namespace genie::traces

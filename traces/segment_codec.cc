#include "traces/segment_codec.h"

#include <unordered_map>

namespace genie::traces {
namespace {

class Encoder {
 public:
  // `first_id` and `total` describe the values the segment defines.
  Encoder(ValueId first_id, uint64_t total) : first_id_(first_id), total_(total) {}

  Status Meta(const TensorMeta& m, ValueId own_id) {
    s_.U8(static_cast<uint8_t>(m.dtype));
    s_.Varint(m.sizes.size());
    for (int64_t v : m.sizes) s_.SVarint(v);
    bool contiguous = m.contiguous();
    s_.U8(contiguous);
    if (!contiguous) {
      if (m.strides.size() != m.sizes.size()) return Status::InvalidArgument("strides and sizes differ in rank");
      for (int64_t v : m.strides) s_.SVarint(v);
    }
    s_.SVarint(m.storage_offset);
    if (m.storage == own_id) {
      s_.Varint(0);
    } else {
      uint64_t r;
      GENIE_RETURN_IF_ERROR(Ref(m.storage, &r));
      s_.Varint(r + 1);
    }
    return Status::OK();
  }

  Status Define(ValueId id) {
    if (id != first_id_ + defined_)
      return Status::InvalidArgument("value ids of a segment must be consecutive: expected " +
                                     std::to_string(first_id_ + defined_) + ", got " + std::to_string(id));
    ++defined_;
    return Status::OK();
  }

  Status Ref(ValueId id, uint64_t* out) {
    if (id >= first_id_ && id < first_id_ + defined_) {
      *out = (id - first_id_) << 1;
      return Status::OK();
    }
    if (id >= first_id_ + defined_ && id < first_id_ + total_)
      return Status::InvalidArgument("value " + std::to_string(id) + " is used before it is defined");
    auto [it, fresh] = external_index_.emplace(id, external_.size());
    if (fresh) external_.push_back(id);
    *out = (it->second << 1) | 1;
    return Status::OK();
  }

  Status EncodeArg(const Arg& a) {
    s_.U8(static_cast<uint8_t>(a.kind));
    switch (a.kind) {
      case Arg::Kind::kNone: break;
      case Arg::Kind::kBool:
      case Arg::Kind::kInt: s_.SVarint(a.i); break;
      case Arg::Kind::kFloat: s_.F64(a.f); break;
      case Arg::Kind::kDType: s_.U8(static_cast<uint8_t>(a.i)); break;
      case Arg::Kind::kString:
      case Arg::Kind::kDevice:
      case Arg::Kind::kLayout:
      case Arg::Kind::kMemoryFormat: s_.Varint(static_cast<uint64_t>(a.i)); break;
      case Arg::Kind::kTensor: {
        uint64_t r;
        GENIE_RETURN_IF_ERROR(Ref(a.tensor, &r));
        s_.Varint(r);
        break;
      }
      case Arg::Kind::kList:
        s_.Varint(a.list.size());
        for (const auto& item : a.list) GENIE_RETURN_IF_ERROR(EncodeArg(item));
        break;
    }
    return Status::OK();
  }

  Status EncodeScalar(const Arg& a) {
    // Recorded scalars go to the data section, with the same layout as args.
    std::swap(s_, d_scalars_);
    Status st = EncodeArg(a);
    std::swap(s_, d_scalars_);
    ++num_scalars_;
    return st;
  }

  Status Steps(const Segment& seg) {
    s_.Varint(seg.steps.size());
    for (const auto& step : seg.steps) {
      s_.U8(static_cast<uint8_t>(step.kind));
      if (step.kind == Step::Kind::kInput) {
        const Input& in = step.input;
        s_.U8(static_cast<uint8_t>(in.kind));
        GENIE_RETURN_IF_ERROR(Meta(in.meta, in.id));
        GENIE_RETURN_IF_ERROR(Define(in.id));
        s_.U8(in.payload.has_value());
        if (in.payload) hashes_.push_back(*in.payload);
        continue;
      }
      const Op& op = step.op;
      s_.Varint(op.schema);
      s_.Varint(op.module);
      s_.U8(static_cast<uint8_t>(op.phase));
      s_.U8(op.flags);
      s_.Varint(op.args.size());
      for (const auto& a : op.args) GENIE_RETURN_IF_ERROR(EncodeArg(a));
      s_.Varint(op.kwargs.size());
      for (const auto& [name, a] : op.kwargs) {
        s_.Varint(name);
        GENIE_RETURN_IF_ERROR(EncodeArg(a));
      }
      s_.Varint(op.outputs.size());
      for (const auto& out : op.outputs) {
        s_.U8(out.is_tensor);
        if (out.is_tensor) {
          GENIE_RETURN_IF_ERROR(Meta(out.meta, out.id));
          GENIE_RETURN_IF_ERROR(Define(out.id));
          s_.U8(out.payload.has_value());
          if (out.payload) hashes_.push_back(*out.payload);
        } else {
          GENIE_RETURN_IF_ERROR(EncodeScalar(out.scalar));
        }
      }
    }
    s_.Varint(seg.materialized.size());
    for (const auto& m : seg.materialized) {
      uint64_t r;
      GENIE_RETURN_IF_ERROR(Ref(m.id, &r));
      s_.Varint(r);
      s_.U8(static_cast<uint8_t>(m.how));
      s_.U8(m.payload.has_value());
      if (m.payload) hashes_.push_back(*m.payload);
    }
    return Status::OK();
  }

  uint64_t Fingerprint() const { return Fnv1a64(s_.buffer().data(), s_.size()); }

  void Finish(const Segment& seg, ByteWriter* out) {
    ByteWriter data;
    data.Varint(first_id_);
    data.Varint(external_.size());
    for (ValueId id : external_) data.Varint(id);
    data.Varint(hashes_.size());
    for (const auto& h : hashes_) data.Bytes(h.bytes.data(), h.bytes.size());
    data.Varint(num_scalars_);
    data.Bytes(d_scalars_.buffer().data(), d_scalars_.size());

    out->Varint(seg.stream);
    out->Varint(seg.index);
    out->Varint(seg.duration_ns);
    out->U64(Fingerprint());
    out->Varint(s_.size());
    out->Bytes(s_.buffer().data(), s_.size());
    out->Varint(data.size());
    out->Bytes(data.buffer().data(), data.size());
  }

 private:
  ValueId first_id_;
  uint64_t total_;
  uint64_t defined_ = 0;
  ByteWriter s_;
  ByteWriter d_scalars_;
  uint64_t num_scalars_ = 0;
  std::vector<ValueId> external_;
  std::unordered_map<ValueId, uint64_t> external_index_;
  std::vector<ContentHash> hashes_;
};

// The first value a segment defines (0 when it defines none), and how many it defines.
std::pair<ValueId, uint64_t> DefinedValues(const Segment& seg) {
  ValueId first = 0;
  uint64_t n = 0;
  auto define = [&](ValueId id) {
    if (n++ == 0) first = id;
  };
  for (const auto& step : seg.steps) {
    if (step.kind == Step::Kind::kInput) define(step.input.id);
    else
      for (const auto& out : step.op.outputs)
        if (out.is_tensor) define(out.id);
  }
  return {first, n};
}

// Decoding runs in two passes over the structure: refs are resolved after the
// data section (which holds the ids they resolve to) has been read.
class Decoder {
 public:
  Decoder(const StringTable& strings) : strings_(strings) {}

  Status StringRef(ByteReader* in, StringId* id) {
    uint64_t v;
    GENIE_RETURN_IF_ERROR(in->Varint(&v));
    if (v >= strings_.size()) return Status::Corruption("string id " + std::to_string(v) + " is not in the string table");
    *id = static_cast<StringId>(v);
    return Status::OK();
  }

  Status Ref(uint64_t r, ValueId* id) {
    uint64_t idx = r >> 1;
    if (r & 1) {
      if (idx >= external_.size()) return Status::Corruption("external value reference out of range");
      *id = external_[idx];
    } else {
      if (idx >= defined_) return Status::Corruption("value reference to a value not yet defined");
      *id = first_id_ + idx;
    }
    return Status::OK();
  }

  Status DecodeArg(ByteReader* in, Arg* a, int depth) {
    if (depth > CodecLimits::kMaxListDepth) return Status::Corruption("argument lists nested too deeply");
    uint8_t kind;
    GENIE_RETURN_IF_ERROR(in->U8(&kind));
    if (kind > static_cast<uint8_t>(Arg::Kind::kMemoryFormat)) return Status::Corruption("unknown argument kind " + std::to_string(kind));
    a->kind = static_cast<Arg::Kind>(kind);
    switch (a->kind) {
      case Arg::Kind::kNone: break;
      case Arg::Kind::kBool:
      case Arg::Kind::kInt: GENIE_RETURN_IF_ERROR(in->SVarint(&a->i)); break;
      case Arg::Kind::kFloat: GENIE_RETURN_IF_ERROR(in->F64(&a->f)); break;
      case Arg::Kind::kDType: {
        uint8_t d;
        GENIE_RETURN_IF_ERROR(in->U8(&d));
        if (d >= kNumDTypes) return Status::Corruption("unknown dtype code " + std::to_string(d));
        a->i = d;
        break;
      }
      case Arg::Kind::kString:
      case Arg::Kind::kDevice:
      case Arg::Kind::kLayout:
      case Arg::Kind::kMemoryFormat: {
        StringId s;
        GENIE_RETURN_IF_ERROR(StringRef(in, &s));
        a->i = s;
        break;
      }
      case Arg::Kind::kTensor: {
        uint64_t r;
        GENIE_RETURN_IF_ERROR(in->Varint(&r));
        GENIE_RETURN_IF_ERROR(Ref(r, &a->tensor));
        break;
      }
      case Arg::Kind::kList: {
        uint64_t n;
        GENIE_RETURN_IF_ERROR(in->Count(&n, std::min<uint64_t>(CodecLimits::kMaxArgs, in->remaining()), "list length"));
        a->list.resize(n);
        for (auto& item : a->list) GENIE_RETURN_IF_ERROR(DecodeArg(in, &item, depth + 1));
        break;
      }
    }
    return Status::OK();
  }

  Status Meta(ByteReader* in, TensorMeta* m, ValueId own_id) {
    uint8_t d;
    GENIE_RETURN_IF_ERROR(in->U8(&d));
    if (d >= kNumDTypes) return Status::Corruption("unknown dtype code " + std::to_string(d));
    m->dtype = static_cast<DType>(d);
    uint64_t rank;
    GENIE_RETURN_IF_ERROR(in->Count(&rank, CodecLimits::kMaxRank, "tensor rank"));
    m->sizes.resize(rank);
    for (auto& v : m->sizes) GENIE_RETURN_IF_ERROR(in->SVarint(&v));
    uint8_t contiguous;
    GENIE_RETURN_IF_ERROR(in->U8(&contiguous));
    m->strides.resize(rank);
    if (contiguous) {
      int64_t s = 1;
      for (size_t i = rank; i-- > 0;) {
        m->strides[i] = s;
        s *= std::max<int64_t>(m->sizes[i], 1);
      }
    } else {
      for (auto& v : m->strides) GENIE_RETURN_IF_ERROR(in->SVarint(&v));
    }
    GENIE_RETURN_IF_ERROR(in->SVarint(&m->storage_offset));
    uint64_t storage;
    GENIE_RETURN_IF_ERROR(in->Varint(&storage));
    if (storage == 0) {
      m->storage = own_id;
    } else {
      GENIE_RETURN_IF_ERROR(Ref(storage - 1, &m->storage));
    }
    return Status::OK();
  }

  Status ReadData(ByteReader* in) {
    GENIE_RETURN_IF_ERROR(in->Varint(&first_id_));
    uint64_t n;
    GENIE_RETURN_IF_ERROR(in->Count(&n, in->remaining(), "external value count"));
    external_.resize(n);
    for (auto& id : external_) GENIE_RETURN_IF_ERROR(in->Varint(&id));
    GENIE_RETURN_IF_ERROR(in->Count(&n, in->remaining() / 32, "payload hash count"));
    hashes_.resize(n);
    for (auto& h : hashes_) {
      const uint8_t* p;
      GENIE_RETURN_IF_ERROR(in->Skip(32, &p));
      ContentHash::FromBytes(p, 32, &h);
    }
    GENIE_RETURN_IF_ERROR(in->Count(&n, in->remaining(), "scalar count"));
    scalars_.resize(n);
    // Scalars never hold tensor references, so they decode before the structure.
    for (auto& s : scalars_) GENIE_RETURN_IF_ERROR(DecodeArg(in, &s, 0));
    return Status::OK();
  }

  Status NextHash(std::optional<ContentHash>* h) {
    if (next_hash_ >= hashes_.size()) return Status::Corruption("segment names more payloads than it carries hashes");
    *h = hashes_[next_hash_++];
    return Status::OK();
  }

  Status ReadStructure(ByteReader* in, Segment* seg) {
    uint64_t n;
    GENIE_RETURN_IF_ERROR(in->Count(&n, std::min<uint64_t>(CodecLimits::kMaxSteps, in->remaining()), "step count"));
    seg->steps.resize(n);
    for (auto& step : seg->steps) {
      uint8_t kind;
      GENIE_RETURN_IF_ERROR(in->U8(&kind));
      if (kind > 1) return Status::Corruption("unknown step kind " + std::to_string(kind));
      step.kind = static_cast<Step::Kind>(kind);
      if (step.kind == Step::Kind::kInput) {
        uint8_t ik, has_payload;
        GENIE_RETURN_IF_ERROR(in->U8(&ik));
        if (ik > 2) return Status::Corruption("unknown input kind " + std::to_string(ik));
        step.input.kind = static_cast<Input::Kind>(ik);
        step.input.id = first_id_ + defined_;
        GENIE_RETURN_IF_ERROR(Meta(in, &step.input.meta, step.input.id));
        ++defined_;
        GENIE_RETURN_IF_ERROR(in->U8(&has_payload));
        if (has_payload) GENIE_RETURN_IF_ERROR(NextHash(&step.input.payload));
        else step.input.payload.reset();  // steps are reused between segments
        continue;
      }
      Op& op = step.op;
      GENIE_RETURN_IF_ERROR(StringRef(in, &op.schema));
      GENIE_RETURN_IF_ERROR(StringRef(in, &op.module));
      uint8_t phase;
      GENIE_RETURN_IF_ERROR(in->U8(&phase));
      if (phase > static_cast<uint8_t>(Phase::kDecode)) return Status::Corruption("unknown phase " + std::to_string(phase));
      op.phase = static_cast<Phase>(phase);
      GENIE_RETURN_IF_ERROR(in->U8(&op.flags));
      GENIE_RETURN_IF_ERROR(in->Count(&n, std::min<uint64_t>(CodecLimits::kMaxArgs, in->remaining()), "argument count"));
      op.args.resize(n);
      for (auto& a : op.args) GENIE_RETURN_IF_ERROR(DecodeArg(in, &a, 0));
      GENIE_RETURN_IF_ERROR(in->Count(&n, std::min<uint64_t>(CodecLimits::kMaxArgs, in->remaining()), "keyword count"));
      op.kwargs.resize(n);
      for (auto& [name, a] : op.kwargs) {
        GENIE_RETURN_IF_ERROR(StringRef(in, &name));
        GENIE_RETURN_IF_ERROR(DecodeArg(in, &a, 0));
      }
      GENIE_RETURN_IF_ERROR(in->Count(&n, std::min<uint64_t>(CodecLimits::kMaxArgs, in->remaining()), "output count"));
      op.outputs.resize(n);
      for (auto& out : op.outputs) {
        uint8_t is_tensor;
        GENIE_RETURN_IF_ERROR(in->U8(&is_tensor));
        out.is_tensor = is_tensor;
        if (is_tensor) {
          out.id = first_id_ + defined_;
          GENIE_RETURN_IF_ERROR(Meta(in, &out.meta, out.id));
          ++defined_;
          uint8_t has_payload;
          GENIE_RETURN_IF_ERROR(in->U8(&has_payload));
          if (has_payload) GENIE_RETURN_IF_ERROR(NextHash(&out.payload));
          else out.payload.reset();
        } else {
          if (next_scalar_ >= scalars_.size()) return Status::Corruption("segment has fewer recorded scalars than outputs");
          out.scalar = scalars_[next_scalar_++];
        }
      }
    }
    GENIE_RETURN_IF_ERROR(in->Count(&n, in->remaining(), "materialization count"));
    seg->materialized.resize(n);
    for (auto& m : seg->materialized) {
      uint64_t r;
      GENIE_RETURN_IF_ERROR(in->Varint(&r));
      GENIE_RETURN_IF_ERROR(Ref(r, &m.id));
      uint8_t how, has_payload;
      GENIE_RETURN_IF_ERROR(in->U8(&how));
      if (how > static_cast<uint8_t>(Materialization::How::kPrint)) return Status::Corruption("unknown materialization kind");
      m.how = static_cast<Materialization::How>(how);
      GENIE_RETURN_IF_ERROR(in->U8(&has_payload));
      if (has_payload) GENIE_RETURN_IF_ERROR(NextHash(&m.payload));
      else m.payload.reset();
    }
    if (!in->done()) return Status::Corruption("segment structure has trailing bytes");
    return Status::OK();
  }

 private:
  const StringTable& strings_;
  ValueId first_id_ = 0;
  uint64_t defined_ = 0;
  std::vector<ValueId> external_;
  std::vector<ContentHash> hashes_;
  size_t next_hash_ = 0;
  std::vector<Arg> scalars_;
  size_t next_scalar_ = 0;
};

}  // namespace

Status EncodeSegment(const Segment& seg, ByteWriter* out) {
  auto [first, total] = DefinedValues(seg);
  Encoder enc(first, total);
  GENIE_RETURN_IF_ERROR(enc.Steps(seg));
  enc.Finish(seg, out);
  return Status::OK();
}

Result<uint64_t> Fingerprint(const Segment& seg) {
  auto [first, total] = DefinedValues(seg);
  Encoder enc(first, total);
  GENIE_RETURN_IF_ERROR(enc.Steps(seg));
  return enc.Fingerprint();
}

Status DecodeSegment(ByteReader* in, const StringTable& strings, Segment* seg) {
  uint64_t stream, structure_len, data_len;
  GENIE_RETURN_IF_ERROR(in->Count(&stream, UINT32_MAX, "stream id"));
  seg->stream = static_cast<uint32_t>(stream);
  GENIE_RETURN_IF_ERROR(in->Varint(&seg->index));
  GENIE_RETURN_IF_ERROR(in->Varint(&seg->duration_ns));
  uint64_t stored_fingerprint;
  GENIE_RETURN_IF_ERROR(in->U64(&stored_fingerprint));
  GENIE_RETURN_IF_ERROR(in->Count(&structure_len, in->remaining(), "segment structure length"));
  const uint8_t* structure;
  GENIE_RETURN_IF_ERROR(in->Skip(structure_len, &structure));
  GENIE_RETURN_IF_ERROR(in->Count(&data_len, in->remaining(), "segment data length"));
  const uint8_t* data;
  GENIE_RETURN_IF_ERROR(in->Skip(data_len, &data));

  seg->fingerprint = Fnv1a64(structure, structure_len);
  if (seg->fingerprint != stored_fingerprint) return Status::Corruption("segment fingerprint does not match its structure");
  Decoder dec(strings);
  ByteReader data_reader(data, data_len);
  GENIE_RETURN_IF_ERROR(dec.ReadData(&data_reader));
  ByteReader structure_reader(structure, structure_len);
  return dec.ReadStructure(&structure_reader, seg);
}

}  // namespace genie::traces

#include "bench/synthetic_trace.h"

#include <memory>
#include <vector>

#include "traces/trace_writer.h"

namespace genie::bench {
namespace {

using traces::Arg;
using traces::DType;
using traces::Phase;
using traces::Step;
using traces::TensorMeta;
using traces::ValueId;
using Shape = std::vector<int64_t>;

TensorMeta Contiguous(DType dtype, const Shape& sizes, ValueId storage) {
  TensorMeta m;
  m.dtype = dtype;
  m.sizes = sizes;
  m.strides.assign(sizes.size(), 1);
  for (int i = static_cast<int>(sizes.size()) - 2; i >= 0; --i) m.strides[i] = m.strides[i + 1] * sizes[i + 1];
  m.storage = storage;
  return m;
}

Arg Ints(const Shape& v) {
  Arg a;
  a.kind = Arg::Kind::kList;
  for (int64_t x : v) a.list.push_back(Arg::Int(x));
  return a;
}

class Builder {
 public:
  explicit Builder(traces::TraceWriter* w) : w_(w) {}

  traces::Segment& seg() { return seg_; }
  const TensorMeta& meta(ValueId v) const { return metas_.at(v); }

  ValueId Input(traces::Input::Kind kind, DType dtype, const Shape& shape) {
    Step s;
    s.kind = Step::Kind::kInput;
    s.input.id = next_++;
    s.input.kind = kind;
    s.input.meta = Contiguous(dtype, shape, s.input.id);
    Remember(s.input.id, s.input.meta);
    seg_.steps.push_back(std::move(s));
    return seg_.steps.back().input.id;
  }

  // An op with one tensor output; `view_of` makes the output alias that value's storage.
  ValueId Op(const char* schema, std::vector<Arg> args, DType dtype, const Shape& shape, ValueId view_of = 0) {
    return Ops(schema, std::move(args), {{dtype, shape}}, view_of)[0];
  }

  std::vector<ValueId> Ops(const char* schema, std::vector<Arg> args, const std::vector<std::pair<DType, Shape>>& outs,
                           ValueId view_of = 0) {
    Step s;
    s.op.schema = w_->strings().Intern(schema);
    s.op.module = module_;
    s.op.phase = phase_;
    s.op.args = std::move(args);
    std::vector<ValueId> ids;
    for (const auto& [dtype, shape] : outs) {
      traces::Output o;
      o.id = next_++;
      o.meta = Contiguous(dtype, shape, view_of ? metas_.at(view_of).storage : o.id);
      Remember(o.id, o.meta);
      ids.push_back(o.id);
      s.op.outputs.push_back(std::move(o));
    }
    seg_.steps.push_back(std::move(s));
    ++ops_;
    return ids;
  }

  void At(const std::string& module, Phase phase) {
    module_ = w_->strings().Intern(module);
    phase_ = phase;
  }

  Status Close(ValueId materialized, traces::Materialization::How how) {
    seg_.materialized.push_back({materialized, how, std::nullopt});
    GENIE_RETURN_IF_ERROR(w_->AddSegment(seg_));
    seg_ = traces::Segment();
    seg_.index = ++segments_;
    return Status::OK();
  }

  uint64_t ops() const { return ops_; }
  uint64_t segments() const { return segments_; }

 private:
  void Remember(ValueId id, const TensorMeta& m) {
    if (metas_.size() <= id) metas_.resize(id + 1);
    metas_[id] = m;
  }

  traces::TraceWriter* w_;
  traces::Segment seg_;
  std::vector<TensorMeta> metas_;  // by value id (ids are dense)
  ValueId next_ = 1;
  traces::StringId module_ = 0;
  Phase phase_ = Phase::kNone;
  uint64_t ops_ = 0;
  uint64_t segments_ = 0;
};

// Position embeddings for as many tokens as a million-op trace decodes.
constexpr int64_t kMaxPositions = 1 << 16;

struct Linear {
  ValueId weight, bias;
  int64_t in, out;
};

struct Block {
  ValueId ln1_w, ln1_b, ln2_w, ln2_b;
  Linear qkv, proj, fc, fc2;
  ValueId past_k = 0, past_v = 0;
};

class Decoder {
 public:
  Decoder(Builder* b, const SyntheticDecoder& m) : b_(b), m_(m), head_dim_(m.hidden / m.heads) {}

  void Parameters() {
    const auto P = traces::Input::Kind::kParameter;
    const int64_t H = m_.hidden;
    wte_ = b_->Input(P, DType::kFloat32, {m_.vocab, H});
    wpe_ = b_->Input(P, DType::kFloat32, {kMaxPositions, H});
    for (int l = 0; l < m_.layers; ++l) {
      Block blk;
      blk.ln1_w = b_->Input(P, DType::kFloat32, {H});
      blk.ln1_b = b_->Input(P, DType::kFloat32, {H});
      blk.qkv = Param(H, 3 * H);
      blk.proj = Param(H, H);
      blk.ln2_w = b_->Input(P, DType::kFloat32, {H});
      blk.ln2_b = b_->Input(P, DType::kFloat32, {H});
      blk.fc = Param(H, 4 * H);
      blk.fc2 = Param(4 * H, H);
      blocks_.push_back(blk);
    }
    lnf_w_ = b_->Input(P, DType::kFloat32, {H});
    lnf_b_ = b_->Input(P, DType::kFloat32, {H});
  }

  // One forward over `t` new tokens at position `pos`; returns the next token (int64[1]).
  ValueId Forward(int64_t t, int64_t pos, Phase phase) {
    const int64_t H = m_.hidden;
    b_->At("GPT", phase);
    ValueId ids = b_->Input(traces::Input::Kind::kTensor, DType::kInt64, {1, t});
    b_->At("GPT.wte", phase);
    ValueId tok = b_->Op("aten::embedding", {Arg::Tensor(wte_), Arg::Tensor(ids)}, DType::kFloat32, {1, t, H});
    b_->At("GPT", phase);
    ValueId positions = b_->Op("aten::arange.start", {Arg::Int(pos), Arg::Int(pos + t)}, DType::kInt64, {t});
    b_->At("GPT.wpe", phase);
    ValueId pe = b_->Op("aten::embedding", {Arg::Tensor(wpe_), Arg::Tensor(positions)}, DType::kFloat32, {t, H});
    b_->At("GPT", phase);
    ValueId x = b_->Op("aten::add.Tensor", {Arg::Tensor(tok), Arg::Tensor(pe)}, DType::kFloat32, {1, t, H});
    for (int l = 0; l < m_.layers; ++l) x = BlockForward(l, x, t, phase);
    b_->At("GPT.ln_f", phase);
    x = LayerNorm(x, lnf_w_, lnf_b_, t);
    b_->At("GPT.lm_head", phase);
    ValueId wt = b_->Op("aten::t", {Arg::Tensor(wte_)}, DType::kFloat32, {H, m_.vocab}, wte_);
    ValueId last = b_->Op("aten::select.int", {Arg::Tensor(x), Arg::Int(1), Arg::Int(-1)}, DType::kFloat32, {1, H}, x);
    ValueId logits = b_->Op("aten::mm", {Arg::Tensor(last), Arg::Tensor(wt)}, DType::kFloat32, {1, m_.vocab});
    b_->At("", phase);
    return b_->Op("aten::argmax", {Arg::Tensor(logits), Arg::Int(-1)}, DType::kInt64, {1});
  }

 private:
  Linear Param(int64_t in, int64_t out) {
    const auto P = traces::Input::Kind::kParameter;
    return {b_->Input(P, DType::kFloat32, {out, in}), b_->Input(P, DType::kFloat32, {out}), in, out};
  }

  ValueId LayerNorm(ValueId x, ValueId w, ValueId bias, int64_t t) {
    return b_->Ops("aten::native_layer_norm",
                   {Arg::Tensor(x), Ints({m_.hidden}), Arg::Tensor(w), Arg::Tensor(bias), Arg::Float(1e-5)},
                   {{DType::kFloat32, {1, t, m_.hidden}}, {DType::kFloat32, {1, t, 1}}, {DType::kFloat32, {1, t, 1}}})[0];
  }

  ValueId Apply(const Linear& lin, ValueId x, int64_t t) {
    ValueId wt = b_->Op("aten::t", {Arg::Tensor(lin.weight)}, DType::kFloat32, {lin.in, lin.out}, lin.weight);
    ValueId flat = b_->Op("aten::view", {Arg::Tensor(x), Ints({t, lin.in})}, DType::kFloat32, {t, lin.in}, x);
    ValueId y = b_->Op("aten::addmm", {Arg::Tensor(lin.bias), Arg::Tensor(flat), Arg::Tensor(wt)}, DType::kFloat32,
                       {t, lin.out});
    return b_->Op("aten::view", {Arg::Tensor(y), Ints({1, t, lin.out})}, DType::kFloat32, {1, t, lin.out}, y);
  }

  ValueId Heads(ValueId x, int64_t t) {
    ValueId v = b_->Op("aten::view", {Arg::Tensor(x), Ints({1, t, m_.heads, head_dim_})}, DType::kFloat32,
                       {1, t, m_.heads, head_dim_}, x);
    return b_->Op("aten::transpose.int", {Arg::Tensor(v), Arg::Int(1), Arg::Int(2)}, DType::kFloat32,
                  {1, m_.heads, t, head_dim_}, v);
  }

  ValueId Cache(ValueId* past, ValueId fresh, int64_t t) {
    if (*past == 0) {
      *past = fresh;
      return fresh;
    }
    int64_t len = b_->meta(*past).sizes[2] + t;
    Arg both;
    both.kind = Arg::Kind::kList;
    both.list = {Arg::Tensor(*past), Arg::Tensor(fresh)};
    *past = b_->Op("aten::cat", {both, Arg::Int(2)}, DType::kFloat32, {1, m_.heads, len, head_dim_});
    return *past;
  }

  ValueId BlockForward(int l, ValueId x, int64_t t, Phase phase) {
    Block& blk = blocks_[l];
    const std::string path = "GPT.h." + std::to_string(l);
    const int64_t H = m_.hidden, nh = m_.heads, d = head_dim_;
    b_->At(path + ".ln_1", phase);
    ValueId h = LayerNorm(x, blk.ln1_w, blk.ln1_b, t);
    b_->At(path + ".attn.c_attn", phase);
    ValueId qkv = Apply(blk.qkv, h, t);
    b_->At(path + ".attn", phase);
    auto parts = b_->Ops("aten::split.Tensor", {Arg::Tensor(qkv), Arg::Int(H), Arg::Int(2)},
                         {{DType::kFloat32, {1, t, H}}, {DType::kFloat32, {1, t, H}}, {DType::kFloat32, {1, t, H}}}, qkv);
    ValueId q = Heads(parts[0], t);
    ValueId k = Cache(&blk.past_k, Heads(parts[1], t), t);
    ValueId v = Cache(&blk.past_v, Heads(parts[2], t), t);
    int64_t len = b_->meta(k).sizes[2];
    ValueId kt = b_->Op("aten::transpose.int", {Arg::Tensor(k), Arg::Int(-1), Arg::Int(-2)}, DType::kFloat32,
                        {1, nh, d, len}, k);
    ValueId q3 = b_->Op("aten::view", {Arg::Tensor(q), Ints({nh, t, d})}, DType::kFloat32, {nh, t, d}, q);
    ValueId k3 = b_->Op("aten::view", {Arg::Tensor(kt), Ints({nh, d, len})}, DType::kFloat32, {nh, d, len}, kt);
    ValueId s = b_->Op("aten::bmm", {Arg::Tensor(q3), Arg::Tensor(k3)}, DType::kFloat32, {nh, t, len});
    ValueId s4 = b_->Op("aten::view", {Arg::Tensor(s), Ints({1, nh, t, len})}, DType::kFloat32, {1, nh, t, len}, s);
    ValueId scaled = b_->Op("aten::div.Scalar", {Arg::Tensor(s4), Arg::Float(8.0)}, DType::kFloat32, {1, nh, t, len});
    ValueId p = b_->Op("aten::_softmax", {Arg::Tensor(scaled), Arg::Int(-1), Arg::Bool(false)}, DType::kFloat32,
                       {1, nh, t, len});
    ValueId p3 = b_->Op("aten::view", {Arg::Tensor(p), Ints({nh, t, len})}, DType::kFloat32, {nh, t, len}, p);
    ValueId v3 = b_->Op("aten::view", {Arg::Tensor(v), Ints({nh, len, d})}, DType::kFloat32, {nh, len, d}, v);
    ValueId o = b_->Op("aten::bmm", {Arg::Tensor(p3), Arg::Tensor(v3)}, DType::kFloat32, {nh, t, d});
    ValueId o4 = b_->Op("aten::view", {Arg::Tensor(o), Ints({1, nh, t, d})}, DType::kFloat32, {1, nh, t, d}, o);
    ValueId ot = b_->Op("aten::transpose.int", {Arg::Tensor(o4), Arg::Int(1), Arg::Int(2)}, DType::kFloat32,
                        {1, t, nh, d}, o4);
    ValueId merged = b_->Op("aten::clone", {Arg::Tensor(ot)}, DType::kFloat32, {1, t, nh, d});
    ValueId flat = b_->Op("aten::view", {Arg::Tensor(merged), Ints({1, t, H})}, DType::kFloat32, {1, t, H}, merged);
    b_->At(path + ".attn.c_proj", phase);
    ValueId a = Apply(blk.proj, flat, t);
    b_->At(path, phase);
    x = b_->Op("aten::add.Tensor", {Arg::Tensor(x), Arg::Tensor(a)}, DType::kFloat32, {1, t, H});
    b_->At(path + ".ln_2", phase);
    h = LayerNorm(x, blk.ln2_w, blk.ln2_b, t);
    b_->At(path + ".mlp.c_fc", phase);
    h = Apply(blk.fc, h, t);
    b_->At(path + ".mlp", phase);
    h = b_->Op("aten::gelu", {Arg::Tensor(h)}, DType::kFloat32, {1, t, 4 * H});
    b_->At(path + ".mlp.c_proj", phase);
    h = Apply(blk.fc2, h, t);
    b_->At(path, phase);
    return b_->Op("aten::add.Tensor", {Arg::Tensor(x), Arg::Tensor(h)}, DType::kFloat32, {1, t, H});
  }

  Builder* b_;
  SyntheticDecoder m_;
  int64_t head_dim_;
  ValueId wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;
  std::vector<Block> blocks_;
};

}  // namespace

Result<SyntheticStats> WriteSyntheticDecoderTrace(const std::string& path, const SyntheticDecoder& model) {
  traces::TraceHeader header;
  header.fields = {{"genie_version", "synthetic"}, {"command", "synthetic GPT decoder"}, {"payload", "none"}};
  GENIE_ASSIGN_OR_RETURN(auto writer, traces::TraceWriter::Create(path, header));
  Builder b(writer.get());
  Decoder dec(&b, model);
  dec.Parameters();
  ValueId next = dec.Forward(model.prompt, 0, Phase::kPrefill);
  GENIE_RETURN_IF_ERROR(b.Close(next, traces::Materialization::How::kItem));
  int64_t pos = model.prompt;
  for (uint64_t step = 0; model.decode_steps ? step < model.decode_steps : b.ops() < model.min_ops; ++step) {
    next = dec.Forward(1, pos++, Phase::kDecode);
    GENIE_RETURN_IF_ERROR(b.Close(next, traces::Materialization::How::kItem));
  }
  traces::TraceFooter footer;
  footer.segments = b.segments();
  footer.ops = b.ops();
  GENIE_RETURN_IF_ERROR(writer->Finish(footer));
  return SyntheticStats{b.segments(), b.ops()};
}

}  // namespace genie::bench

#include "traces/graph.h"

#include <array>

namespace genie::traces {
namespace {

struct DTypeInfo {
  const char* name;
  size_t size;
  bool floating;
};

constexpr std::array<DTypeInfo, kNumDTypes> kDTypes = {{
    {"bool", 1, false}, {"uint8", 1, false}, {"int8", 1, false}, {"int16", 2, false},
    {"int32", 4, false}, {"int64", 8, false}, {"float16", 2, true}, {"bfloat16", 2, true},
    {"float32", 4, true}, {"float64", 8, true}, {"complex64", 8, true}, {"complex128", 16, true},
}};

}  // namespace

const char* DTypeName(DType d) { return kDTypes[static_cast<size_t>(d)].name; }
size_t DTypeSize(DType d) { return kDTypes[static_cast<size_t>(d)].size; }
bool DTypeIsFloating(DType d) { return kDTypes[static_cast<size_t>(d)].floating; }

Result<DType> DTypeFromName(std::string_view name) {
  for (size_t i = 0; i < kDTypes.size(); ++i)
    if (name == kDTypes[i].name) return static_cast<DType>(i);
  return Status::NotFound("unknown dtype '" + std::string(name) + "'");
}

StringId StringTable::Intern(std::string_view s) {
  auto it = index_.find(std::string(s));
  if (it != index_.end()) return it->second;
  auto id = static_cast<StringId>(strings_.size());
  strings_.emplace_back(s);
  index_.emplace(strings_.back(), id);
  return id;
}

int64_t TensorMeta::numel() const {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

bool TensorMeta::contiguous() const {
  if (strides.size() != sizes.size()) return false;
  int64_t expected = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] != 1 && strides[i] != expected) return false;
    expected *= sizes[i];
  }
  return true;
}

uint64_t TensorMeta::nbytes() const { return static_cast<uint64_t>(numel()) * DTypeSize(dtype); }

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kNone: return "none";
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kOptimizer: return "optimizer";
    case Phase::kPrefill: return "prefill";
    case Phase::kDecode: return "decode";
  }
  return "?";
}

const char* InputKindName(Input::Kind k) {
  switch (k) {
    case Input::Kind::kParameter: return "parameter";
    case Input::Kind::kTensor: return "tensor";
    case Input::Kind::kConstant: return "constant";
  }
  return "?";
}

const char* HowName(Materialization::How h) {
  switch (h) {
    case Materialization::How::kCpu: return "cpu";
    case Materialization::How::kItem: return "item";
    case Materialization::How::kToList: return "tolist";
    case Materialization::How::kNumpy: return "numpy";
    case Materialization::How::kPrint: return "print";
  }
  return "?";
}

size_t Segment::num_ops() const {
  size_t n = 0;
  for (const auto& s : steps) n += s.kind == Step::Kind::kOp;
  return n;
}

const TensorMeta* DefinedMeta(const Segment& seg, ValueId id) {
  for (const auto& step : seg.steps) {
    if (step.kind == Step::Kind::kInput) {
      if (step.input.id == id) return &step.input.meta;
      continue;
    }
    for (const auto& out : step.op.outputs)
      if (out.is_tensor && out.id == id) return &out.meta;
  }
  return nullptr;
}

}  // namespace genie::traces

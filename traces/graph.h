// The graph IR of a recorded program: segments of ops between materialization
// points, with typed arguments and output tensor metadata.
//
// Strings (op schemas, module paths, keyword names, string arguments) are
// interned in a StringTable owned by whoever holds the segments (a TraceReader,
// a TraceWriter, the recorder); the IR holds their ids. Value ids are the
// frontend's generation ids, unique within a stream (one connected process);
// they never derive from memory addresses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/content_hash.h"
#include "common/status.h"

namespace genie::traces {

using ValueId = uint64_t;
using StringId = uint32_t;

// dtypes with their canonical wire/trace names. The numeric codes are part of
// the trace format (FORMAT.md): append only.
enum class DType : uint8_t {
  kBool = 0, kUInt8 = 1, kInt8 = 2, kInt16 = 3, kInt32 = 4, kInt64 = 5,
  kFloat16 = 6, kBFloat16 = 7, kFloat32 = 8, kFloat64 = 9, kComplex64 = 10, kComplex128 = 11,
};
constexpr int kNumDTypes = 12;
const char* DTypeName(DType d);                       // "float32"
Result<DType> DTypeFromName(std::string_view name);   // NotFound for an unknown name
size_t DTypeSize(DType d);                            // bytes per element
bool DTypeIsFloating(DType d);

// Interned strings; ids are dense and stable for the life of the table.
class StringTable {
 public:
  StringId Intern(std::string_view s);
  const std::string& Get(StringId id) const { return strings_[id]; }
  bool Contains(StringId id) const { return id < strings_.size(); }
  size_t size() const { return strings_.size(); }
  const std::vector<std::string>& all() const { return strings_; }

 private:
  std::vector<std::string> strings_;
  std::unordered_map<std::string, StringId> index_;
};

struct TensorMeta {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  int64_t storage_offset = 0;
  // The value whose storage this tensor aliases; equal to the tensor's own id
  // when it owns a fresh storage (views and in-place results point elsewhere).
  ValueId storage = 0;

  int64_t numel() const;
  bool contiguous() const;
  // Bytes of a contiguous copy: numel() * DTypeSize(dtype).
  uint64_t nbytes() const;
};

// Where in the program an op ran. Codes are part of the trace format.
enum class Phase : uint8_t { kNone = 0, kForward = 1, kBackward = 2, kOptimizer = 3, kPrefill = 4, kDecode = 5 };
const char* PhaseName(Phase p);

struct Arg {
  // Codes are part of the trace format.
  enum class Kind : uint8_t {
    kNone = 0, kBool = 1, kInt = 2, kFloat = 3, kString = 4, kTensor = 5, kList = 6,
    kDType = 7, kDevice = 8, kLayout = 9, kMemoryFormat = 10,
  };
  Kind kind = Kind::kNone;
  int64_t i = 0;          // kBool, kInt, kDType (a DType code); a StringId for kString/kDevice/kLayout/kMemoryFormat
  double f = 0;           // kFloat
  ValueId tensor = 0;     // kTensor
  std::vector<Arg> list;  // kList (its items may be any kind, kNone for an absent optional tensor)

  static Arg None() { return Arg{}; }
  static Arg Bool(bool v) { Arg a; a.kind = Kind::kBool; a.i = v; return a; }
  static Arg Int(int64_t v) { Arg a; a.kind = Kind::kInt; a.i = v; return a; }
  static Arg Float(double v) { Arg a; a.kind = Kind::kFloat; a.f = v; return a; }
  static Arg Tensor(ValueId v) { Arg a; a.kind = Kind::kTensor; a.tensor = v; return a; }
  static Arg Str(Kind k, StringId s) { Arg a; a.kind = k; a.i = s; return a; }
};

// A tensor entering the remote side from the program: a parameter moved with
// model.to(), a tensor moved with .to() or made by torch.tensor(), or a CPU
// tensor mixed into an op on remote tensors.
struct Input {
  enum class Kind : uint8_t { kParameter = 0, kTensor = 1, kConstant = 2 };
  ValueId id = 0;
  Kind kind = Kind::kTensor;
  TensorMeta meta;
  std::optional<ContentHash> payload;  // absent when recorded with --payload none
};
const char* InputKindName(Input::Kind k);

struct Output {
  bool is_tensor = true;
  ValueId id = 0;   // tensor outputs
  TensorMeta meta;  // tensor outputs
  // A random op's result as recorded: a replay uses it instead of drawing
  // from another generator, so its outputs can be verified.
  std::optional<ContentHash> payload;
  Arg scalar;       // a non-tensor result, recorded (its op is a materialization point)
};

struct Op {
  enum Flags : uint8_t { kRandom = 1 };  // output depends on the RNG state
  StringId schema = 0;  // "aten::add.Tensor": name, then '.' and the overload when it has one
  std::vector<Arg> args;
  std::vector<std::pair<StringId, Arg>> kwargs;
  std::vector<Output> outputs;
  StringId module = 0;  // module path, "" outside any module
  Phase phase = Phase::kNone;
  uint8_t flags = 0;
};

// One step of a segment, in program order.
struct Step {
  enum class Kind : uint8_t { kInput = 0, kOp = 1 };
  Kind kind = Kind::kOp;
  Input input;
  Op op;
};

// A value the program pulled back to the host, closing the segment.
struct Materialization {
  // Codes are part of the trace format.
  enum class How : uint8_t { kCpu = 0, kItem = 1, kToList = 2, kNumpy = 3, kPrint = 4 };
  ValueId id = 0;
  How how = How::kCpu;
  std::optional<ContentHash> payload;  // the recorded value (with --payload full)
};
const char* HowName(Materialization::How h);

struct Segment {
  uint32_t stream = 0;  // which connected process recorded it
  uint64_t index = 0;   // position within its stream
  std::vector<Step> steps;
  std::vector<Materialization> materialized;
  uint64_t duration_ns = 0;  // capture wall time of the segment (not part of the canonical dump)
  uint64_t fingerprint = 0;  // structural: equal for segments that repeat (filled by the codec)

  size_t num_ops() const;
};

// The meta of value `id` where `seg` defines it (an input or a tensor
// output); nullptr when it is defined elsewhere.
const TensorMeta* DefinedMeta(const Segment& seg, ValueId id);

}  // namespace genie::traces

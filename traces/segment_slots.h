// A segment split into its integers and everything else, so that a segment
// which repeats an earlier one's structure with other integers (the next
// decode step: new value ids, a KV cache one position longer) can cross the
// wire as the few integers that differ from a prediction.
//
// The *skeleton* is every part of a segment that is not an integer slot:
// step kinds, schemas, module paths, phases, flags, dtypes, ranks, argument
// kinds, list lengths, recorded scalar results (bit for bit), strings,
// payload presence, materialization kinds. The *slots* are, in one fixed
// walk order: the segment's index, every value id (defined, referred to,
// aliased storage, materialized), every size, stride and storage offset,
// every integer argument, and every float argument as its IEEE-754 bits (an
// optimizer's step sizes, which change at every step). The *hashes* are the payload
// hashes the segment names (inputs, recorded outputs, materializations), in
// walk order. Two segments with equal skeletons have equally many slots and
// hashes, one for one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/byte_io.h"
#include "common/content_hash.h"
#include "common/status.h"
#include "traces/graph.h"

namespace genie::traces {

struct SegmentSlots {
  std::string skeleton;        // opaque bytes; equal skeletons mean the same structure up to slots
  std::vector<int64_t> ints;   // the integer slots, in walk order
  std::vector<ContentHash> hashes;
};

void Flatten(const Segment& seg, SegmentSlots* out);

// Writes `ints` and `hashes` into `seg` in walk order: `seg` is a segment
// with the skeleton the slots were taken from (its own integers are
// replaced). InvalidArgument when the counts differ from the skeleton's
// (`seg` is then partly overwritten).
Status Assign(const std::vector<int64_t>& ints, const std::vector<ContentHash>& hashes, Segment* seg);

// The last two integer vectors seen for one skeleton, predicting the next by
// linear extrapolation: slot i is expected at last[i] + (last[i] - before[i])
// (at last[i] until two are seen). Ids that advance by the same count each
// step, and sizes that grow by one, are then predicted exactly, so a decode
// step usually differs from its prediction in no slot at all.
class SlotPredictor {
 public:
  explicit SlotPredictor(std::vector<int64_t> first) : last_(std::move(first)) {}

  size_t size() const { return last_.size(); }

  // Appends the slots of `next` that differ from the prediction to `out` as
  // varint pairs (slots skipped since the previous difference, zig-zag
  // difference from the prediction); `next` becomes the latest. `next` must
  // have size() slots.
  void Encode(const std::vector<int64_t>& next, ByteWriter* out);

  // The inverse of Encode: fills `next` from the prediction and `diffs`, and
  // makes it the latest. Corruption when `diffs` is malformed or names a slot
  // past the end; the predictor is unchanged then.
  Status Decode(std::string_view diffs, std::vector<int64_t>* next);

  // The vector expected next; `steps` > 1: the one expected that many runs
  // on (the run after the next, for a loop run two steps ahead).
  std::vector<int64_t> Prediction(int64_t steps = 1) const;

 private:

  std::vector<int64_t> last_;
  std::vector<int64_t> before_;  // empty until a second vector is seen
};

// The ids a repeating segment releases (values the program dropped),
// predicted relative to the first value the segment defines: as the last
// list of the same length, moved along. Lists of a few lengths are kept,
// since a step now and then drops more (a garbage collection, a check).
class ReleasePredictor {
 public:
  ReleasePredictor(const std::vector<uint64_t>& first, uint64_t base);

  // Appends the encoding of `ids` to `out`: nothing when they are the
  // prediction for the last length, else varint(length) then the ids that
  // differ from the prediction as in SlotPredictor::Encode.
  void Encode(const std::vector<uint64_t>& ids, uint64_t base, ByteWriter* out);

  // The inverse of Encode. Corruption when `in` is malformed (the predictor
  // is unchanged then).
  Status Decode(std::string_view in, uint64_t base, std::vector<uint64_t>* ids);

 private:
  static constexpr size_t kLengths = 8;

  // The last list of `n` ids (relative), zeros for a new length; all lengths are forgotten when kLengths are held.
  const std::vector<int64_t>& Prediction(size_t n);
  void Keep(std::vector<int64_t> relative);

  size_t last_length_ = 0;
  std::vector<std::vector<int64_t>> lists_;  // by length, one each
  std::vector<int64_t> zeros_;
};

// The first value `seg` defines, 0 when it defines none.
ValueId FirstDefined(const Segment& seg);

}  // namespace genie::traces

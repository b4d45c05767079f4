// Byte encoding of one Segment inside a trace chunk (see FORMAT.md).
//
// A segment is written as a *structure* section and a *data* section. The
// structure holds everything that makes the graph what it is (schemas,
// arguments, shapes, module paths, phases) with value references made
// segment-relative; the data section holds what changes between repetitions
// of the same graph (absolute value ids, payload hashes, recorded scalars).
// The fingerprint is a hash of the structure alone, so every decode step of a
// loop, or every training step, has the same fingerprint.
#pragma once

#include "common/byte_io.h"
#include "traces/graph.h"

namespace genie::traces {

// Limits checked while decoding, before memory is allocated.
struct CodecLimits {
  static constexpr uint64_t kMaxSteps = 1u << 24;
  static constexpr uint64_t kMaxRank = 64;
  static constexpr uint64_t kMaxArgs = 1u << 16;
  static constexpr int kMaxListDepth = 8;
};

// Appends the record of `seg` to `out`. Fails with InvalidArgument when the
// value ids defined by the segment are not consecutive, or a step refers to a
// value defined later in the same segment.
Status EncodeSegment(const Segment& seg, ByteWriter* out);

// The fingerprint EncodeSegment would write for `seg` (fails as it would).
Result<uint64_t> Fingerprint(const Segment& seg);

// Decodes one record from `in` into `seg` (fingerprint included). Every string
// id is checked against `strings` and every count against CodecLimits; a bad
// record is Status::Corruption.
Status DecodeSegment(ByteReader* in, const StringTable& strings, Segment* seg);

}  // namespace genie::traces

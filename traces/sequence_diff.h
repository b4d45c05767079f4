// Alignment of two sequences of keys (Myers' O((N+M)D) shortest edit script):
// the basis of `genie diff`, which aligns segments and then the ops inside
// paired segments, so that an inserted or removed op shifts nothing after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace genie::traces {

struct Alignment {
  // Index pairs (i in a, j in b) with a[i] == b[j], strictly increasing in
  // both. The positions between consecutive matches are the edits.
  std::vector<std::pair<uint32_t, uint32_t>> matches;
  // False when more than `max_edits` insertions and deletions separate the
  // sequences: then only their common prefix and suffix are matched.
  bool minimal = true;
};

// A longest common subsequence of a and b whenever at most `max_edits`
// edits separate them. Time O((N+M)·D), memory O(D²) for D edits.
Alignment AlignSequences(const uint64_t* a, size_t n, const uint64_t* b, size_t m, size_t max_edits);

inline Alignment AlignSequences(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b, size_t max_edits) {
  return AlignSequences(a.data(), a.size(), b.data(), b.size(), max_edits);
}

// One stretch between matches: a[a_begin, a_end) was replaced by b[b_begin, b_end)
// (either side may be empty).
struct Gap {
  uint32_t a_begin, a_end, b_begin, b_end;
};
// The gaps of an alignment of sequences of lengths n and m, in order.
std::vector<Gap> AlignmentGaps(const Alignment& al, size_t n, size_t m);

}  // namespace genie::traces

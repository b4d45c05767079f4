#include "traces/sequence_diff.h"

#include <algorithm>

namespace genie::traces {

Alignment AlignSequences(const uint64_t* a, size_t n, const uint64_t* b, size_t m, size_t max_edits) {
  Alignment out;
  size_t prefix = 0;
  while (prefix < n && prefix < m && a[prefix] == b[prefix]) ++prefix;
  size_t suffix = 0;
  while (suffix < n - prefix && suffix < m - prefix && a[n - 1 - suffix] == b[m - 1 - suffix]) ++suffix;
  for (size_t i = 0; i < prefix; ++i) out.matches.emplace_back(i, i);

  const uint64_t* A = a + prefix;
  const uint64_t* B = b + prefix;
  const long N = static_cast<long>(n - prefix - suffix);
  const long M = static_cast<long>(m - prefix - suffix);
  std::vector<std::pair<uint32_t, uint32_t>> middle;
  if (N > 0 && M > 0) {
    const long max_d = std::min<long>(N + M, static_cast<long>(max_edits));
    const long offset = max_d + 1;
    std::vector<long> v(2 * max_d + 3, 0);
    // history[d] holds v[k] for k in [-d, d] as it stood after round d.
    std::vector<std::vector<long>> history;
    long found_d = -1;
    for (long d = 0; d <= max_d && found_d < 0; ++d) {
      for (long k = -d; k <= d; k += 2) {
        long x = (k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1])) ? v[offset + k + 1]
                                                                                : v[offset + k - 1] + 1;
        long y = x - k;
        while (x < N && y < M && A[x] == B[y]) ++x, ++y;
        v[offset + k] = x;
        if (x >= N && y >= M) {
          found_d = d;
          break;
        }
      }
      if (found_d < 0) history.emplace_back(v.begin() + offset - d, v.begin() + offset + d + 1);
    }
    if (found_d < 0) {
      out.minimal = false;
    } else {
      long x = N, y = M;
      for (long d = found_d; d > 0; --d) {
        const std::vector<long>& prev = history[d - 1];  // indexed by k + (d - 1)
        auto at = [&](long k) { return prev[k + d - 1]; };
        long k = x - y;
        long prev_k = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
        long prev_x = at(prev_k);
        long prev_y = prev_x - prev_k;
        while (x > prev_x && y > prev_y) {
          --x, --y;
          middle.emplace_back(x, y);
        }
        x = prev_x;
        y = prev_y;
      }
      while (x > 0 && y > 0) {
        --x, --y;
        middle.emplace_back(x, y);
      }
      std::reverse(middle.begin(), middle.end());
    }
  }
  for (auto [i, j] : middle) out.matches.emplace_back(i + prefix, j + prefix);
  for (size_t i = 0; i < suffix; ++i) out.matches.emplace_back(n - suffix + i, m - suffix + i);
  return out;
}

std::vector<Gap> AlignmentGaps(const Alignment& al, size_t n, size_t m) {
  std::vector<Gap> gaps;
  uint32_t i = 0, j = 0;
  auto close = [&](uint32_t ni, uint32_t nj) {
    if (ni > i || nj > j) gaps.push_back({i, ni, j, nj});
  };
  for (auto [mi, mj] : al.matches) {
    close(mi, mj);
    i = mi + 1;
    j = mj + 1;
  }
  close(static_cast<uint32_t>(n), static_cast<uint32_t>(m));
  return gaps;
}

}  // namespace genie::traces

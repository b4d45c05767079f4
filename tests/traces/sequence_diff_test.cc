#include <random>

#include "tests/catch.h"
#include "traces/sequence_diff.h"

using namespace genie::traces;

namespace {

size_t LcsLength(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  std::vector<std::vector<size_t>> t(a.size() + 1, std::vector<size_t>(b.size() + 1, 0));
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j)
      t[i][j] = a[i - 1] == b[j - 1] ? t[i - 1][j - 1] + 1 : std::max(t[i - 1][j], t[i][j - 1]);
  return t[a.size()][b.size()];
}

void RequireValid(const Alignment& al, const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  for (size_t k = 0; k < al.matches.size(); ++k) {
    auto [i, j] = al.matches[k];
    REQUIRE(a[i] == b[j]);
    if (k) {
      REQUIRE(i > al.matches[k - 1].first);
      REQUIRE(j > al.matches[k - 1].second);
    }
  }
}

}  // namespace

TEST_CASE("an op inserted in the middle leaves every other op matched") {
  std::vector<uint64_t> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint64_t> b = {1, 2, 3, 9, 4, 5, 6};
  Alignment al = AlignSequences(a, b, 100);
  REQUIRE(al.minimal);
  REQUIRE(al.matches.size() == 6);
  auto gaps = AlignmentGaps(al, a.size(), b.size());
  REQUIRE(gaps.size() == 1);
  REQUIRE(gaps[0].a_begin == 3);
  REQUIRE(gaps[0].a_end == 3);
  REQUIRE(gaps[0].b_begin == 3);
  REQUIRE(gaps[0].b_end == 4);
}

TEST_CASE("a replaced op is one gap with one element on each side") {
  std::vector<uint64_t> a = {7, 1, 2, 8};
  std::vector<uint64_t> b = {7, 3, 2, 8};
  auto gaps = AlignmentGaps(AlignSequences(a, b, 100), a.size(), b.size());
  REQUIRE(gaps.size() == 1);
  REQUIRE((gaps[0].a_begin == 1 && gaps[0].a_end == 2 && gaps[0].b_begin == 1 && gaps[0].b_end == 2));
}

TEST_CASE("alignments are longest common subsequences on random sequences") {
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    std::vector<uint64_t> a(rng() % 40), b(rng() % 40);
    for (auto& x : a) x = rng() % 4;
    for (auto& x : b) x = rng() % 4;
    Alignment al = AlignSequences(a, b, 1000);
    REQUIRE(al.minimal);
    RequireValid(al, a, b);
    REQUIRE(al.matches.size() == LcsLength(a, b));
  }
}

TEST_CASE("sequences further apart than the edit limit keep their common prefix and suffix") {
  std::vector<uint64_t> a = {1, 2, 10, 11, 12, 13, 3};
  std::vector<uint64_t> b = {1, 2, 20, 21, 22, 23, 3};
  Alignment al = AlignSequences(a, b, 3);
  REQUIRE_FALSE(al.minimal);
  RequireValid(al, a, b);
  REQUIRE(al.matches.size() == 3);
  auto gaps = AlignmentGaps(al, a.size(), b.size());
  REQUIRE(gaps.size() == 1);
  REQUIRE((gaps[0].a_end - gaps[0].a_begin == 4 && gaps[0].b_end - gaps[0].b_begin == 4));
}

TEST_CASE("empty sequences align to all insertions or all deletions") {
  std::vector<uint64_t> none, some = {1, 2, 3};
  REQUIRE(AlignSequences(none, some, 10).matches.empty());
  auto gaps = AlignmentGaps(AlignSequences(some, none, 10), 3, 0);
  REQUIRE(gaps.size() == 1);
  REQUIRE(gaps[0].a_end == 3);
  REQUIRE(AlignmentGaps(AlignSequences(none, none, 10), 0, 0).empty());
}

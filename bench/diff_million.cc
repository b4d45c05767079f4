// `genie diff` on two traces of about a million ops each: a GPT-2-shaped
// decoder with 12 blocks against the same with 13 (one more block in every
// decode step, so every segment differs), and against an identical trace.
// The baseline is reading both traces without diffing them. Prints medians
// (target: a diff under 5 s).
//
//   build/bench/diff_million [--ops 1000000] [--repeats 3] [--dir /tmp]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/synthetic_trace.h"
#include "traces/trace_diff.h"

using namespace genie;
using bench::Median;
using bench::Seconds;

namespace {

void Check(const Status& st) { bench::CheckOrExit("diff_million", st); }


}  // namespace

int main(int argc, char** argv) {
  uint64_t ops = 1000000;
  int repeats = 3;
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ops")) ops = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  std::string tag = dir + "/genie-diff-bench-" + std::to_string(getpid());
  std::string base = tag + "-base.gtrace", same = tag + "-same.gtrace", deeper = tag + "-deeper.gtrace";
  bench::SyntheticDecoder model;
  model.min_ops = ops;
  auto sb = bench::WriteSyntheticDecoderTrace(base, model);
  Check(sb.status());
  Check(bench::WriteSyntheticDecoderTrace(same, model).status());
  bench::SyntheticDecoder more = model;
  more.layers += 1;
  more.decode_steps = sb.value().segments - 1;  // the same tokens, each through one more block
  auto sd = bench::WriteSyntheticDecoderTrace(deeper, more);
  Check(sd.status());
  std::printf("traces: %llu ops in %llu segments (base), %llu ops in %llu segments (one more block)\n",
              static_cast<unsigned long long>(sb.value().ops), static_cast<unsigned long long>(sb.value().segments),
              static_cast<unsigned long long>(sd.value().ops), static_cast<unsigned long long>(sd.value().segments));

  std::vector<double> read, diff_same, diff_deeper;
  traces::DiffOptions options;
  uint64_t changes = 0;
  for (int r = 0; r < repeats; ++r) {
    read.push_back(Seconds([&] {
      Check(bench::ReadWholeTrace(base));
      Check(bench::ReadWholeTrace(deeper));
    }));
    diff_same.push_back(Seconds([&] {
      auto d = traces::DiffTraces(base, same, options);
      Check(d.status());
      if (!d.value().identical()) Check(Status::Internal("identical traces diffed with differences"));
    }));
    diff_deeper.push_back(Seconds([&] {
      auto d = traces::DiffTraces(base, deeper, options);
      Check(d.status());
      changes = d.value().ops_added;
      if (d.value().regressions.empty()) Check(Status::Internal("one more block was not a regression"));
    }));
  }
  ::unlink(base.c_str());
  ::unlink(same.c_str());
  ::unlink(deeper.c_str());
  double rd = Median(read), s = Median(diff_same), d = Median(diff_deeper);
  std::printf("read both traces (baseline)   %.2f s\n", rd);
  std::printf("diff identical                %.2f s  (%.2fx reading)\n", s, s / rd);
  std::printf("diff one more block           %.2f s  (%.2fx reading), %llu ops added\n", d, d / rd,
              static_cast<unsigned long long>(changes));
  std::printf("target: diff under 5 s: %s\n", std::max(s, d) < 5.0 ? "met" : "NOT met");
  return 0;
}

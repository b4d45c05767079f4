// `genie analyze` throughput and plan lookup latency.
//
// 1. Analyze a synthetic GPT-2-shaped decoder trace of about a million ops
//    (bench/synthetic_trace.h) end to end: read, match the built-in pattern
//    library, classify, gather costs. Baseline: reading the same trace.
//    Target: at least 1 M ops/s.
// 2. Find the stored plan for a trace in a store holding --plans other plans:
//    the trace's key from the store's trace index, then the plan by key and
//    pool. Target: under 1 ms. (The first lookup of a trace file reads its
//    fingerprints once; it is printed too.)
//
//   build/bench/analyze_million [--ops 1000000] [--repeats 3] [--plans 1000] [--dir /tmp]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "analyzer/analysis.h"
#include "bench/bench_util.h"
#include "bench/synthetic_trace.h"
#include "planner/plan_lookup.h"

using namespace genie;
using bench::Median;
using bench::Seconds;

namespace {

void Check(const Status& st) { bench::CheckOrExit("analyze_million", st); }

}  // namespace

int main(int argc, char** argv) {
  uint64_t ops = 1000000;
  int repeats = 3, plans = 1000;
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ops")) ops = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--plans")) plans = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  std::string tag = dir + "/genie-analyze-bench-" + std::to_string(getpid());
  std::string trace = tag + ".gtrace", store_path = tag + "-plans.db";
  bench::SyntheticDecoder model;
  model.min_ops = ops;
  auto stats = bench::WriteSyntheticDecoderTrace(trace, model);
  Check(stats.status());
  const double n = static_cast<double>(stats.value().ops);
  std::printf("trace: %llu ops in %llu segments\n", static_cast<unsigned long long>(stats.value().ops),
              static_cast<unsigned long long>(stats.value().segments));

  analyzer::PatternLibrary library = analyzer::PatternLibrary::Builtin();
  std::vector<double> read, analyze;
  std::string klass;
  for (int r = 0; r < repeats; ++r) {
    read.push_back(Seconds([&] { Check(bench::ReadWholeTrace(trace)); }));
    analyze.push_back(Seconds([&] {
      auto a = analyzer::AnalyzeTrace(trace, library);
      Check(a.status());
      klass = analyzer::WorkloadClassName(a.value().klass);
    }));
  }
  double rd = Median(read), an = Median(analyze);
  std::printf("read the trace (baseline)     %.2f s  %.2f M ops/s\n", rd, n / rd / 1e6);
  std::printf("analyze (read + patterns)     %.2f s  %.2f M ops/s  (%.2fx reading), class %s\n", an, n / an / 1e6,
              an / rd, klass.c_str());
  std::printf("target: analyze >= 1 M ops/s: %s\n", n / an >= 1e6 ? "met" : "NOT met");

  // Plan lookup in a store of `plans` plans.
  auto store = planner::PlanStore::Open(store_path);
  Check(store.status());
  auto analysis = analyzer::AnalyzeTrace(trace, library);
  Check(analysis.status());
  planner::PoolShape pool;
  pool.name = "gpu-pool-1";
  pool.runtimes.push_back({"10.0.0.5:7070", {"cuda:0"}});
  analyzer::Analysis other = analysis.value();
  for (int i = 0; i < plans; ++i) {
    other.fingerprints = {static_cast<uint64_t>(i) * 7919 + 1};
    auto p = planner::MakePlan(other, pool, analyzer::WorkloadClass::kNone);
    Check(p.status());
    Check(store.value()->Put(p.value()));
  }
  auto mine = planner::MakePlan(analysis.value(), pool, analyzer::WorkloadClass::kNone);
  Check(mine.status());
  Check(store.value()->Put(mine.value()));
  double first_ms = 1e3 * Seconds([&] { Check(planner::TraceKeyOf(*store.value(), trace).status()); });
  std::vector<double> lookups;
  for (int i = 0; i < 1000; ++i) {
    lookups.push_back(1e3 * Seconds([&] {
      auto key = planner::TraceKeyOf(*store.value(), trace);
      Check(key.status());
      auto found = store.value()->Find(key.value(), pool.name);
      Check(found.status());
      if (!found.value() || found.value()->id != mine.value().id) Check(Status::Internal("the stored plan was not found"));
    }));
  }
  double lk = Median(lookups);
  std::printf("plan lookup among %d plans     %.3f ms median of 1000 (first lookup of the file, reading it: %.0f ms)\n",
              plans + 1, lk, first_ms);
  std::printf("target: lookup under 1 ms: %s\n", lk < 1.0 ? "met" : "NOT met");
  std::filesystem::remove(trace);
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(store_path + suffix);
  return 0;
}

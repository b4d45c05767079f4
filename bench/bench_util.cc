#include "bench/bench_util.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "traces/trace_reader.h"

namespace genie::bench {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void CheckOrExit(const char* program, const Status& st) {
  if (st.ok()) return;
  std::fprintf(stderr, "%s: %s\n", program, st.message().c_str());
  std::exit(1);
}

Status ReadWholeTrace(const std::string& path) {
  GENIE_ASSIGN_OR_RETURN(auto reader, traces::TraceReader::Open(path));
  traces::Segment seg;
  while (true) {
    GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
    if (!more) return Status::OK();
  }
}

}  // namespace genie::bench

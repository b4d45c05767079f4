// What the C++ benchmarks share: timing, medians, failing loudly.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace genie::bench {

double Median(std::vector<double> v);          // of a non-empty sample
double Seconds(const std::function<void()>& fn);  // wall time of one call
// Prints "<program>: <message>" and exits 1 when `st` is not OK.
void CheckOrExit(const char* program, const Status& st);
// Reads every segment of a trace (the baseline the trace benchmarks compare against).
Status ReadWholeTrace(const std::string& path);

}  // namespace genie::bench

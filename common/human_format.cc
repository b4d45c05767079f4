#include "common/human_format.h"

#include <cstdio>

namespace genie {

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
  return buf;
}

std::string FormatSeconds(uint64_t ns) {
  char buf[32];
  if (ns >= 1000000000ull) std::snprintf(buf, sizeof(buf), "%.2f s", ns / 1e9);
  else std::snprintf(buf, sizeof(buf), "%.1f ms", ns / 1e6);
  return buf;
}

std::string FormatCount(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace genie

// Human-readable numbers for summaries and reports.
#pragma once

#include <cstdint>
#include <string>

namespace genie {

std::string FormatBytes(uint64_t bytes);   // "1.2 MB", "512 B"
std::string FormatSeconds(uint64_t ns);    // "1.23 s", "45.6 ms"
std::string FormatCount(uint64_t n);       // "1,234,567"

}  // namespace genie

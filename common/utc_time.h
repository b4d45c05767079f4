// UTC timestamps as the trace header and the plan store write them.
#pragma once

#include <ctime>
#include <string>

namespace genie {

// "2026-11-27T02:02:43Z" for `t`; sorts as text in time order.
std::string UtcTimestamp(std::time_t t);
inline std::string UtcNow() { return UtcTimestamp(std::time(nullptr)); }

}  // namespace genie

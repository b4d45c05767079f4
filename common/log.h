// One-line logs to stderr: "2026-11-27T00:12:03.123Z INFO message".
#pragma once

#include <string>

namespace genie {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Lines below the level are dropped. The default is kInfo, or GENIE_LOG_LEVEL.
void SetLogLevel(LogLevel level);
// Parses "debug", "info", "warn", "error"; false when it is none of them.
bool ParseLogLevel(const std::string& s, LogLevel* level);
bool LogEnabled(LogLevel level);
void Log(LogLevel level, const std::string& message);

}  // namespace genie

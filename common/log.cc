#include "common/log.h"

#include <sys/time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace genie {
namespace {

LogLevel InitialLevel() {
  LogLevel l = LogLevel::kInfo;
  if (const char* e = std::getenv("GENIE_LOG_LEVEL")) ParseLogLevel(e, &l);
  return l;
}

std::atomic<int>& Level() {
  static std::atomic<int> level{static_cast<int>(InitialLevel())};
  return level;
}

}  // namespace

void SetLogLevel(LogLevel level) { Level() = static_cast<int>(level); }

bool ParseLogLevel(const std::string& s, LogLevel* level) {
  if (s == "debug") *level = LogLevel::kDebug;
  else if (s == "info") *level = LogLevel::kInfo;
  else if (s == "warn") *level = LogLevel::kWarn;
  else if (s == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= Level(); }

void Log(LogLevel level, const std::string& message) {
  if (!LogEnabled(level)) return;
  static const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  timeval tv;
  gettimeofday(&tv, nullptr);
  std::tm tm{};
  gmtime_r(&tv.tv_sec, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, static_cast<long>(tv.tv_usec / 1000), kNames[static_cast<int>(level)],
               message.c_str());
}

}  // namespace genie

#include "traces/trace_paths.h"

#include <ctime>
#include <filesystem>
#include <system_error>

namespace genie::traces {

namespace fs = std::filesystem;

const std::string& ProgramOf(const std::vector<std::string>& argv) {
  bool python = argv.size() > 1 && fs::path(argv[0]).filename().string().rfind("python", 0) == 0;
  return python ? argv[1] : argv[0];
}

Result<std::string> DefaultTracePath(const std::string& program, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());
  std::string stem = fs::path(program).stem().string();
  if (stem.empty()) stem = "trace";
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
  std::string base = dir + "/" + stem + "-" + stamp;
  std::string path = base + kTraceExtension;
  for (int i = 2; fs::exists(path); ++i) path = base + "-" + std::to_string(i) + kTraceExtension;
  return path;
}

Result<std::string> NewestTrace(const std::string& dir) {
  std::error_code ec;
  std::string best;
  fs::file_time_type best_time;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != kTraceExtension) continue;
    auto t = it->last_write_time();
    if (best.empty() || t > best_time || (t == best_time && it->path().string() > best)) {
      best = it->path().string();
      best_time = t;
    }
  }
  if (best.empty())
    return Status::NotFound("no trace given and none found under ./" + dir + "/ (record one with `genie record PROGRAM`)");
  return best;
}

Result<std::string> TraceOrNewest(const std::string& given) {
  if (!given.empty()) return given;
  return NewestTrace();
}

}  // namespace genie::traces

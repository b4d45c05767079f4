// Constants and header/footer records of the .gtrace container (FORMAT.md).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace genie::traces {

constexpr char kTraceMagic[8] = {'G', 'T', 'R', 'A', 'C', 'E', '\r', '\n'};
constexpr uint32_t kTraceFormatVersion = 1;
constexpr uint32_t kChunkMagic = 0x4B484347;  // "GCHK" little-endian
constexpr uint32_t kMaxHeaderBytes = 1u << 20;
constexpr uint32_t kMaxChunkBytes = 64u << 20;  // raw or stored; checked before allocating
constexpr uint32_t kChunkHeaderBytes = 20;

enum class ChunkType : uint8_t { kSegments = 1, kPayload = 2, kEnd = 3 };
enum ChunkFlags : uint8_t { kChunkZstd = 1 };

// The header: free-form key/value pairs (genie, torch and python versions,
// host, command line, creation time). Only "created" varies between two
// recordings of the same program on the same host.
struct TraceHeader {
  uint32_t format_version = kTraceFormatVersion;
  std::vector<std::pair<std::string, std::string>> fields;

  std::string Get(const std::string& key) const {
    for (const auto& [k, v] : fields)
      if (k == key) return v;
    return "";
  }
};

// The end record, written last. A trace without one was cut off (the
// recorder was killed or the disk filled); a trace whose footer says
// `truncated` was closed cleanly after its program failed.
struct TraceFooter {
  uint64_t segments = 0;
  uint64_t ops = 0;
  uint64_t payloads = 0;
  uint64_t payload_bytes = 0;
  int64_t exit_status = 0;     // the program's: exit code, or 128 + signal
  bool truncated = false;
  std::string reason;          // why it is truncated, one line
  uint64_t capture_ns = 0;     // the program's wall time under the recorder
};

}  // namespace genie::traces

// Writes a .gtrace file (FORMAT.md): header, then chunks of segments and
// payloads as they arrive, then the end record.
//
// Segments are buffered and written as one zstd chunk per ~1 MiB of encoding;
// payloads are written at once, split into chunks of at most 4 MiB, and each
// distinct payload only once. A payload therefore always precedes the first
// segment that names it. Every chunk that is written is complete on disk
// (written with one write() call after its header), so a recorder killed
// mid-way leaves a file whose intact chunks remain readable.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <unordered_set>

#include "common/byte_io.h"
#include "common/status.h"
#include "traces/graph.h"
#include "traces/trace_file.h"

namespace genie::traces {

struct TraceWriterStats {
  uint64_t segments = 0;
  uint64_t ops = 0;
  uint64_t distinct_ops = 0;    // distinct op schemas
  uint64_t payloads = 0;        // distinct
  uint64_t payload_bytes = 0;   // raw bytes of distinct payloads
  uint64_t segment_bytes = 0;   // stored (compressed) bytes of segment chunks, headers included
  uint64_t file_bytes = 0;
};

class TraceWriter {
 public:
  // Creates (or truncates) `path` and writes the header.
  static Result<std::unique_ptr<TraceWriter>> Create(const std::string& path, const TraceHeader& header);
  ~TraceWriter();

  // The table the segments' string ids refer to. Strings interned here are
  // written before the first segment that could use them.
  StringTable& strings() { return strings_; }

  Status AddSegment(const Segment& seg);
  bool HasPayload(const ContentHash& h) const { return payloads_.count(h) != 0; }
  // Writes the payload unless one with the same hash was written already.
  Status AddPayload(const ContentHash& h, const void* data, size_t n);
  // Flushes buffered segments and writes the end record; the writer is closed after.
  Status Finish(TraceFooter footer);

  const TraceWriterStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }

 private:
  TraceWriter(std::string path, std::FILE* f) : path_(std::move(path)), file_(f) {}
  Status FlushSegments();
  Status WriteChunk(ChunkType type, const std::string& raw, bool compress);

  std::string path_;
  std::FILE* file_;
  StringTable strings_;
  size_t strings_written_ = 0;
  ByteWriter pending_;
  uint64_t pending_segments_ = 0;
  std::unordered_set<ContentHash, ContentHashHasher> payloads_;
  std::unordered_set<StringId> schemas_;
  TraceWriterStats stats_;
  void* zstd_ctx_ = nullptr;
};

}  // namespace genie::traces

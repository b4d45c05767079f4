// Reads a .gtrace file chunk by chunk, in bounded memory (one chunk, at most
// kMaxChunkBytes, at a time).
//
// Every failure names the file and is one of: not a trace (bad magic), a newer
// format version, a corrupt header or chunk (checksum or decoding), or a
// trace cut off before its end record (truncated).
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "traces/graph.h"
#include "traces/trace_file.h"

namespace genie::traces {

class TraceReader {
 public:
  static Result<std::unique_ptr<TraceReader>> Open(const std::string& path);
  ~TraceReader();

  const TraceHeader& header() const { return header_; }
  const StringTable& strings() const { return strings_; }
  const std::string& path() const { return path_; }

  // Called for each piece of payload as it is read: its hash, the payload's
  // total size, the piece's offset within it, and the piece's bytes.
  using PayloadFn = std::function<Status(const ContentHash&, uint64_t total, uint64_t offset, std::string_view bytes)>;
  void set_payload_callback(PayloadFn fn) { on_payload_ = std::move(fn); }

  // Reads the next segment into `seg`. Returns true on a segment, false once
  // the end record has been read (footer() is then set), or an error.
  Result<bool> Next(Segment* seg);

  const std::optional<TraceFooter>& footer() const { return footer_; }
  uint64_t segments_read() const { return segments_read_; }
  uint64_t payload_pieces_read() const { return payload_pieces_; }
  // Stored bytes of the segment chunks read so far, chunk headers included:
  // the size of the graphs alone, without payloads.
  uint64_t graph_bytes_read() const { return graph_bytes_; }
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  TraceReader(std::string path, std::FILE* f) : path_(std::move(path)), file_(f) {}
  Status ReadHeader();
  // Reads one chunk into chunk_ (decompressed); sets *type.
  Status ReadChunk(ChunkType* type, bool* eof);
  Status Error(const Status& st) const;

  std::string path_;
  std::FILE* file_;
  TraceHeader header_;
  StringTable strings_;
  PayloadFn on_payload_;
  std::string chunk_;
  std::string stored_;
  size_t chunk_pos_ = 0;
  uint64_t chunk_segments_left_ = 0;
  uint64_t chunk_index_ = 0;
  uint64_t offset_ = 0;
  uint64_t segments_read_ = 0;
  uint64_t payload_pieces_ = 0;
  uint64_t graph_bytes_ = 0;
  uint64_t last_stored_bytes_ = 0;
  uint64_t file_bytes_ = 0;
  std::optional<TraceFooter> footer_;
  void* zstd_ctx_ = nullptr;
};

// Reads a whole trace's header, footer and segment count, skipping payload
// bytes; fails like TraceReader::Next does.
struct TraceSummary {
  TraceHeader header;
  TraceFooter footer;
  uint64_t file_bytes = 0;
  uint64_t graph_bytes = 0;  // segment chunks: the trace without its payloads
  uint64_t distinct_ops = 0;
  uint64_t distinct_fingerprints = 0;
  uint64_t inputs = 0;
  uint64_t materializations = 0;
};
Result<TraceSummary> SummarizeTrace(const std::string& path);

}  // namespace genie::traces

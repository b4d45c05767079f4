#include "traces/trace_reader.h"

#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <sys/stat.h>

#include "common/byte_io.h"
#include "common/crc32c.h"
#include "traces/segment_codec.h"

namespace genie::traces {

Result<std::unique_ptr<TraceReader>> TraceReader::Open(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound(path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument(path + ": is a directory, not a trace");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  std::unique_ptr<TraceReader> r(new TraceReader(path, f));
  r->file_bytes_ = static_cast<uint64_t>(st.st_size);
  r->zstd_ctx_ = ZSTD_createDCtx();
  GENIE_RETURN_IF_ERROR(r->ReadHeader());
  return r;
}

TraceReader::~TraceReader() {
  if (file_) std::fclose(file_);
  ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(zstd_ctx_));
}

Status TraceReader::Error(const Status& st) const { return st.WithContext(path_); }

Status TraceReader::ReadHeader() {
  char magic[8];
  uint32_t version = 0, len = 0;
  if (std::fread(magic, 1, 8, file_) != 8 || std::memcmp(magic, kTraceMagic, 8) != 0)
    return Error(Status::InvalidArgument("not a Genie trace (bad magic bytes)"));
  if (std::fread(&version, 4, 1, file_) != 1 || std::fread(&len, 4, 1, file_) != 1)
    return Error(Status::Corruption("trace header is truncated"));
  if (version > kTraceFormatVersion)
    return Error(Status::Unsupported("trace format version " + std::to_string(version) +
                                     " is newer than this genie reads (" + std::to_string(kTraceFormatVersion) +
                                     "); upgrade genie"));
  if (version == 0) return Error(Status::Corruption("trace format version 0 is invalid"));
  if (len > kMaxHeaderBytes) return Error(Status::Corruption("trace header length " + std::to_string(len) + " is implausible"));
  std::string h(len, '\0');
  uint32_t crc = 0;
  if (std::fread(h.data(), 1, len, file_) != len || std::fread(&crc, 4, 1, file_) != 1)
    return Error(Status::Corruption("trace header is truncated"));
  if (Crc32c(h.data(), h.size()) != crc) return Error(Status::Corruption("trace header checksum mismatch"));
  ByteReader in(h);
  uint64_t n;
  GENIE_RETURN_IF_ERROR(Error(in.Count(&n, len, "header field count")));
  header_.format_version = version;
  header_.fields.resize(n);
  for (auto& [k, v] : header_.fields) {
    GENIE_RETURN_IF_ERROR(Error(in.Str(&k)));
    GENIE_RETURN_IF_ERROR(Error(in.Str(&v)));
  }
  offset_ = 8 + 4 + 4 + len + 4;
  return Status::OK();
}

Status TraceReader::ReadChunk(ChunkType* type, bool* eof) {
  uint8_t head[kChunkHeaderBytes];
  size_t got = std::fread(head, 1, sizeof(head), file_);
  *eof = false;
  auto truncated = [&] {
    return Status::Corruption("truncated at byte " + std::to_string(offset_) + " after " +
                              std::to_string(segments_read_) + " intact segments (the trace has no end record)");
  };
  if (got == 0 && std::feof(file_)) return truncated();
  if (got != sizeof(head)) return truncated();
  uint32_t magic, raw_len, stored_len, crc;
  std::memcpy(&magic, head, 4);
  std::memcpy(&raw_len, head + 8, 4);
  std::memcpy(&stored_len, head + 12, 4);
  std::memcpy(&crc, head + 16, 4);
  std::string where = "chunk " + std::to_string(chunk_index_) + " at byte " + std::to_string(offset_);
  if (magic != kChunkMagic) return Status::Corruption(where + " has a bad chunk marker");
  uint8_t t = head[4], flags = head[5];
  if (t < 1 || t > 3 || (flags & ~kChunkZstd) != 0)
    return Status::Corruption(where + " has an unknown type or flags");
  if (raw_len > kMaxChunkBytes || stored_len > kMaxChunkBytes)
    return Status::Corruption(where + " declares an implausible size");
  stored_.resize(stored_len);
  if (std::fread(stored_.data(), 1, stored_len, file_) != stored_len) return truncated();
  uint32_t actual = Crc32c(head, 16);
  actual = Crc32c(stored_.data(), stored_.size(), actual);
  if (actual != crc) return Status::Corruption(where + " checksum mismatch (the file is damaged)");
  if (flags & kChunkZstd) {
    chunk_.resize(raw_len);
    size_t n = ZSTD_decompressDCtx(static_cast<ZSTD_DCtx*>(zstd_ctx_), chunk_.data(), raw_len, stored_.data(), stored_len);
    if (ZSTD_isError(n) || n != raw_len) return Status::Corruption(where + " does not decompress");
  } else {
    if (raw_len != stored_len) return Status::Corruption(where + " has inconsistent sizes");
    chunk_.swap(stored_);
  }
  offset_ += sizeof(head) + stored_len;
  last_stored_bytes_ = stored_len;
  ++chunk_index_;
  *type = static_cast<ChunkType>(t);
  chunk_pos_ = 0;
  return Status::OK();
}

Result<bool> TraceReader::Next(Segment* seg) {
  if (footer_) return false;
  while (chunk_segments_left_ == 0) {
    ChunkType type;
    bool eof;
    GENIE_RETURN_IF_ERROR(Error(ReadChunk(&type, &eof)));
    ByteReader in(chunk_);
    if (type == ChunkType::kEnd) {
      TraceFooter f;
      uint8_t truncated = 0;
      Status st = in.Varint(&f.segments);
      if (st.ok()) st = in.Varint(&f.ops);
      if (st.ok()) st = in.Varint(&f.payloads);
      if (st.ok()) st = in.Varint(&f.payload_bytes);
      if (st.ok()) st = in.SVarint(&f.exit_status);
      if (st.ok()) st = in.U8(&truncated);
      if (st.ok()) st = in.Str(&f.reason);
      if (st.ok()) st = in.Varint(&f.capture_ns);
      if (!st.ok()) return Error(st.WithContext("end record"));
      f.truncated = truncated;
      if (f.segments != segments_read_)
        return Error(Status::Corruption("end record counts " + std::to_string(f.segments) + " segments but " +
                                        std::to_string(segments_read_) + " were read"));
      footer_ = f;
      return false;
    }
    if (type == ChunkType::kPayload) {
      ++payload_pieces_;
      if (on_payload_) {
        const uint8_t* h = nullptr;
        uint64_t total, offset;
        GENIE_RETURN_IF_ERROR(Error(in.Skip(32, &h)));
        GENIE_RETURN_IF_ERROR(Error(in.Varint(&total)));
        GENIE_RETURN_IF_ERROR(Error(in.Varint(&offset)));
        if (offset > total || in.remaining() > total - offset)
          return Error(Status::Corruption("payload piece lies outside its payload"));
        ContentHash hash;
        ContentHash::FromBytes(h, 32, &hash);
        const uint8_t* bytes;
        size_t n = in.remaining();
        GENIE_RETURN_IF_ERROR(Error(in.Skip(n, &bytes)));
        GENIE_RETURN_IF_ERROR(on_payload_(hash, total, offset, std::string_view(reinterpret_cast<const char*>(bytes), n)));
      }
      continue;
    }
    graph_bytes_ += kChunkHeaderBytes + last_stored_bytes_;
    uint64_t n;
    GENIE_RETURN_IF_ERROR(Error(in.Count(&n, chunk_.size(), "string count")));
    for (uint64_t i = 0; i < n; ++i) {
      std::string s;
      GENIE_RETURN_IF_ERROR(Error(in.Str(&s)));
      strings_.Intern(s);
    }
    GENIE_RETURN_IF_ERROR(Error(in.Count(&chunk_segments_left_, chunk_.size(), "segment count")));
    chunk_pos_ = chunk_.size() - in.remaining();
  }
  ByteReader in(chunk_.data() + chunk_pos_, chunk_.size() - chunk_pos_);
  *seg = Segment();
  Status st = DecodeSegment(&in, strings_, seg);
  if (!st.ok()) return Error(st.WithContext("segment " + std::to_string(segments_read_)));
  chunk_pos_ = chunk_.size() - in.remaining();
  --chunk_segments_left_;
  ++segments_read_;
  return true;
}

Result<TraceSummary> SummarizeTrace(const std::string& path) {
  GENIE_ASSIGN_OR_RETURN(auto reader, TraceReader::Open(path));
  TraceSummary s;
  s.header = reader->header();
  std::set<StringId> ops;
  std::set<uint64_t> fingerprints;
  Segment seg;
  while (true) {
    GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
    if (!more) break;
    fingerprints.insert(seg.fingerprint);
    for (const auto& step : seg.steps) {
      if (step.kind == Step::Kind::kOp) ops.insert(step.op.schema);
      else ++s.inputs;
    }
    s.materializations += seg.materialized.size();
  }
  s.footer = *reader->footer();
  s.file_bytes = reader->file_bytes();
  s.graph_bytes = reader->graph_bytes_read();
  s.distinct_ops = ops.size();
  s.distinct_fingerprints = fingerprints.size();
  return s;
}

}  // namespace genie::traces

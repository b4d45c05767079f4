#include "traces/trace_writer.h"

#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "common/crc32c.h"
#include "traces/segment_codec.h"

namespace genie::traces {
namespace {

constexpr size_t kSegmentChunkTarget = 1u << 20;
constexpr size_t kPayloadPiece = 4u << 20;
constexpr int kSegmentZstdLevel = 3;
constexpr int kPayloadZstdLevel = 1;

Status WriteAll(std::FILE* f, const std::string& path, const void* p, size_t n) {
  if (std::fwrite(p, 1, n, f) != n) return Status::IOError(path + ": write failed: " + std::strerror(errno));
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<TraceWriter>> TraceWriter::Create(const std::string& path, const TraceHeader& header) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  std::unique_ptr<TraceWriter> w(new TraceWriter(path, f));
  w->zstd_ctx_ = ZSTD_createCCtx();

  ByteWriter h;
  h.Varint(header.fields.size());
  for (const auto& [k, v] : header.fields) {
    h.Str(k);
    h.Str(v);
  }
  ByteWriter out;
  out.Bytes(kTraceMagic, sizeof(kTraceMagic));
  out.U32(kTraceFormatVersion);
  out.U32(static_cast<uint32_t>(h.size()));
  out.Bytes(h.buffer().data(), h.size());
  out.U32(Crc32c(h.buffer().data(), h.size()));
  GENIE_RETURN_IF_ERROR(WriteAll(f, path, out.buffer().data(), out.size()));
  std::fflush(f);
  w->stats_.file_bytes = out.size();
  return w;
}

TraceWriter::~TraceWriter() {
  if (file_) std::fclose(file_);
  ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(zstd_ctx_));
}

Status TraceWriter::WriteChunk(ChunkType type, const std::string& raw, bool compress) {
  if (!file_) return Status::Internal("trace writer is closed");
  std::string stored;
  uint8_t flags = 0;
  if (compress) {
    stored.resize(ZSTD_compressBound(raw.size()));
    int level = type == ChunkType::kPayload ? kPayloadZstdLevel : kSegmentZstdLevel;
    size_t n = ZSTD_compressCCtx(static_cast<ZSTD_CCtx*>(zstd_ctx_), stored.data(), stored.size(), raw.data(), raw.size(), level);
    if (ZSTD_isError(n)) return Status::Internal(std::string("zstd: ") + ZSTD_getErrorName(n));
    stored.resize(n);
    // Payloads of random floats barely compress; keep them raw then.
    if (type == ChunkType::kPayload && n > raw.size() - raw.size() / 10) {
      compress = false;
    } else {
      flags |= kChunkZstd;
    }
  }
  const std::string& body = compress ? stored : raw;
  ByteWriter head;
  head.U32(kChunkMagic);
  head.U8(static_cast<uint8_t>(type));
  head.U8(flags);
  head.U8(0);
  head.U8(0);
  head.U32(static_cast<uint32_t>(raw.size()));
  head.U32(static_cast<uint32_t>(body.size()));
  uint32_t crc = Crc32c(head.buffer().data(), head.size());
  crc = Crc32c(body.data(), body.size(), crc);
  head.U32(crc);
  head.Bytes(body.data(), body.size());
  GENIE_RETURN_IF_ERROR(WriteAll(file_, path_, head.buffer().data(), head.size()));
  if (std::fflush(file_) != 0) return Status::IOError(path_ + ": write failed: " + std::strerror(errno));
  stats_.file_bytes += head.size();
  if (type == ChunkType::kSegments) stats_.segment_bytes += head.size();
  return Status::OK();
}

Status TraceWriter::AddSegment(const Segment& seg) {
  GENIE_RETURN_IF_ERROR(EncodeSegment(seg, &pending_));
  ++pending_segments_;
  ++stats_.segments;
  for (const auto& step : seg.steps) {
    if (step.kind != Step::Kind::kOp) continue;
    ++stats_.ops;
    if (schemas_.insert(step.op.schema).second) ++stats_.distinct_ops;
  }
  if (pending_.size() >= kSegmentChunkTarget) return FlushSegments();
  return Status::OK();
}

Status TraceWriter::FlushSegments() {
  if (pending_segments_ == 0 && strings_written_ == strings_.size()) return Status::OK();
  ByteWriter raw;
  raw.Varint(strings_.size() - strings_written_);
  for (size_t i = strings_written_; i < strings_.size(); ++i) raw.Str(strings_.Get(static_cast<StringId>(i)));
  raw.Varint(pending_segments_);
  raw.Bytes(pending_.buffer().data(), pending_.size());
  GENIE_RETURN_IF_ERROR(WriteChunk(ChunkType::kSegments, raw.buffer(), true));
  strings_written_ = strings_.size();
  pending_.clear();
  pending_segments_ = 0;
  return Status::OK();
}

Status TraceWriter::AddPayload(const ContentHash& h, const void* data, size_t n) {
  if (HasPayload(h)) return Status::OK();
  const auto* p = static_cast<const char*>(data);
  size_t offset = 0;
  do {
    size_t piece = std::min(kPayloadPiece, n - offset);
    ByteWriter raw;
    raw.Bytes(h.bytes.data(), h.bytes.size());
    raw.Varint(n);
    raw.Varint(offset);
    raw.Bytes(p + offset, piece);
    GENIE_RETURN_IF_ERROR(WriteChunk(ChunkType::kPayload, raw.buffer(), true));
    offset += piece;
  } while (offset < n);
  payloads_.insert(h);
  ++stats_.payloads;
  stats_.payload_bytes += n;
  return Status::OK();
}

Status TraceWriter::Finish(TraceFooter footer) {
  GENIE_RETURN_IF_ERROR(FlushSegments());
  footer.segments = stats_.segments;
  footer.ops = stats_.ops;
  footer.payloads = stats_.payloads;
  footer.payload_bytes = stats_.payload_bytes;
  ByteWriter raw;
  raw.Varint(footer.segments);
  raw.Varint(footer.ops);
  raw.Varint(footer.payloads);
  raw.Varint(footer.payload_bytes);
  raw.SVarint(footer.exit_status);
  raw.U8(footer.truncated);
  raw.Str(footer.reason);
  raw.Varint(footer.capture_ns);
  GENIE_RETURN_IF_ERROR(WriteChunk(ChunkType::kEnd, raw.buffer(), false));
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) return Status::IOError(path_ + ": close failed: " + std::strerror(errno));
  return Status::OK();
}

}  // namespace genie::traces

// The frames the capture frontend (recorder/python/genie) sends to the genie
// process over a unix socket, and their decoding into trace segments.
//
// Frame: u32 body length (little-endian) | u8 type | body. Bodies are at most
// kMaxFrameBody bytes; a longer length is rejected before anything is read.
//
//   HELLO    strings*: protocol version, frontend version, interpreter path,
//            python version, "yes"/"no" (can the interpreter import torch),
//            pid. Always the first frame of a connection.
//   STRINGS  strings*: appended to the connection's string table; ids are
//            dense from 0 in order of arrival.
//   SEGMENT  u64 capture duration ns | u32 word count | u32 float count |
//            words (i64) | floats (f64). The words are a sequence of steps:
//              INPUT  1, value id, input kind, <meta>, payload id or -1
//              OP     2, schema sid, module sid, phase, flags,
//                     n, <arg>*n, n, (name sid, <arg>)*n, n, <out>*n
//              MAT    3, value id, how, payload id or -1
//            <meta> dtype code, rank r, r sizes, r strides, storage offset,
//                   storage value id
//            <arg>  kind, then: none: -; bool, int: value; float: index into
//                   the floats; string, device, layout, memory format: sid;
//                   tensor: value id; list: n, <arg>*n; dtype: code
//            <out>  1, value id, <meta>, payload id or -1 (set for the
//                   results of random ops)   or   0, <arg> (a scalar result)
//   PAYLOAD  i64 payload id | u64 total bytes | u64 offset | bytes. A payload
//            larger than one frame arrives as several pieces in order.
//   INPUT_PAYLOAD  as PAYLOAD, for a payload that exactly one INPUT record
//            names, of a tensor the program made or moved there (not a
//            parameter, not a constant lifted by content): a batch, an
//            image, a value drawn for a random op. A trace keeps it as any
//            payload; live mode may name a large one without hashing it
//            (FrontendSink::TakesTransient). All pieces of a payload come in
//            frames of one type.
//              RELEASE 4, n, value id*n  (live mode: values the program
//                     dropped; the runtime frees them after the segment)
//              RUN    5, template id, first value id, k, T_1 .. T_k, n,
//                     (value id, storage value id)*n: a TEMPLATE's records
//                     for one module call on n arguments whose sizes vary
//                     with T_1 .. T_k (see TEMPLATE)
//   RING     u64 size, sent with one file descriptor (SCM_RIGHTS): shared
//            memory the frontend made (a memfd sealed against shrinking) of
//            kRingHeaderBytes + size bytes, for its large single-use
//            payloads. At most one per connection. The header's first u64 is
//            the genie process's: every ring position below it is free again.
//   RING_PAYLOAD  i64 payload id | u64 total bytes | u64 position |
//            u64 ready: an INPUT_PAYLOAD whose bytes the frontend copies into
//            the ring at kRingHeaderBytes + position % size (within the ring;
//            positions count up, a payload that would wrap starts at the next
//            multiple of size), of which the first `ready` (1 to total) are
//            there. One with ready < total is followed at once by frames of
//            the same payload with more ready, up to total, and no other
//            frame between: a large payload is announced piece by piece as
//            it is copied, so that genie run sends each piece on to the
//            runtime while the frontend copies the next
//            (FrontendSink::AddTransientView). When the genie process is done
//            with the bytes it stores position + total in the header. A
//            program's batch moves with one copy into memory both processes
//            map, rather than through the socket and out of it again.
//   PART     as SEGMENT, without MAT steps: live mode sends a long segment's
//            ops ahead in parts at module-call boundaries; the genie process
//            executes each without answering, and the SEGMENT that follows
//            answers for them all (with the first error, if a part failed).
//   TEMPLATE u32 template id | u32 word count | u32 float count |
//            u32 patch count | words (i64) | floats (f64) |
//            (i64 position, i64 kind, i64 a, i64 b)*patch count.
//            The records of a module call that the frontend replays without
//            capturing its ops (recorder/python/genie/templates.py): INPUT
//            and OP steps only, whose float indices index the template's own
//            floats. A RUN step stands for them with the word at each patched
//            position replaced by, per kind: 0 the run's first value id + a;
//            1 the value id of its argument a; 2 the storage value id of its
//            argument a; 3 a * T_1 + b; 4 a (a float index); 5 the word so
//            far (set by the patches before it at that position) + a * T_(b+1).
//            A RUN brings at least as many Ts as its template's patches read,
//            at most kMaxTemplateTs. Ids are dense from 0 in order of
//            arrival; a RUN's segment translates exactly as if the patched
//            words stood in its place.
//   WRITES   u32 n | (u32 op sid, u32 argument position, u32 argument
//            name sid)*n: the arguments that ops write in place, by their
//            schemas (`Tensor(a!)`; on torch 1.13 also native_batch_norm's
//            running statistics, which its schema leaves unmarked). Sent
//            before the first SEGMENT or PART holding such an op; the
//            position is the argument's in the schema, the name its name
//            as a keyword argument. Live mode uses them (replayer/live.cc,
//            early answers); a trace keeps none of them.
//   ANSWERED as SEGMENT, with one MAT step, whose value the frontend took
//            from an EARLY frame: the genie process runs it as it would a
//            segment it answered early, and sends no REPLY. Live mode only.
//   END      empty: the program closed the connection cleanly.
//   REPLY    genie -> frontend, live mode only: the answer to each SEGMENT.
//            u8 0 or 2 | u32 n | (u8 dtype code, u8 rank, i64 sizes*rank,
//            u64 nbytes, bytes)*n | u32 m | (u8 kind, 8 bytes)*m   or
//            u8 1 | utf-8 message (the segment failed). Tensors are the
//            segment's MAT steps in order; scalars are the non-tensor op
//            results (kind 0 none, 1 bool, 2 int: i64; 3 float: f64).
//            2 rather than 0: the runtime runs the program's next step ahead
//            (a cycle, replayer/live.cc), so the frontend sends no parts;
//            3: answered from a value fetched early (replayer/live.cc, early
//            answers), so the frontend sends a training step's backward with
//            the step's materialization rather than ahead.
//   EARLY    genie -> frontend, live mode only, unasked: u64 value id |
//            u64 parts | a REPLY body of status 3 with that one value. Sent
//            as soon as the reply of the part that fetched the value early
//            is in (replayer/live.cc, early answers), when no op the genie
//            process has seen may have written it; `parts`: the PART frames
//            it had read then. The frontend answers that value's
//            materialization from it, with an ANSWERED frame and no wait,
//            when it sent no PART since and no record since refers to the
//            value's storage (a view, a write); else it is dropped, and the
//            next SEGMENT asks as usual. One that comes while the frontend
//            waits for a REPLY is dropped.
//
// strings* is u32 count, then u32 length | utf-8 bytes per string.
// Codes are those of traces/graph.h; recorder/python/genie/codes.py mirrors them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "traces/graph.h"
#include "traces/trace_writer.h"

namespace genie::recorder {

constexpr uint32_t kFrontendProtocolVersion = 6;  // 5: INPUT_PAYLOAD; 6: RING
constexpr uint32_t kMaxFrameBody = 64u << 20;
constexpr uint32_t kFrameHeadBytes = 5;
constexpr uint32_t kMaxTemplates = 1u << 16;  // TEMPLATE frames per connection
constexpr uint32_t kMaxTemplateArguments = 1u << 20;
constexpr uint32_t kMaxTemplateTs = 16;  // the sizes a template's records vary with
constexpr uint64_t kRingHeaderBytes = 4096;
constexpr uint64_t kMaxRingBytes = 1ull << 30;

enum class FrameType : uint8_t { kHello = 1, kStrings = 2, kSegment = 3, kPayload = 4, kEnd = 5, kReply = 6, kPart = 7,
                                 kTemplate = 8, kWrites = 9, kEarly = 10, kAnswered = 11,
                                 kInputPayload = 12, kRing = 13, kRingPayload = 14 };

struct Hello {
  uint32_t protocol_version = 0;
  std::string frontend_version;
  std::string interpreter;
  std::string python_version;
  bool has_torch = false;
  int64_t pid = 0;
};

// Where a FrontendStream puts what it decodes: a trace (genie record) or a
// runtime (genie run PROGRAM).
class FrontendSink {
 public:
  virtual ~FrontendSink() = default;
  // The table the stream's strings are re-interned in; segments use its ids.
  virtual traces::StringTable& strings() = 0;
  // A complete payload and its SHA-256. `single_use`: an INPUT_PAYLOAD
  // frame's, which one INPUT record names (the frontend sends the bytes
  // again for any later one); else the stream may name it again.
  virtual Status AddPayload(const ContentHash& h, std::string bytes, bool single_use) = 0;
  // Whether a single-use payload (an INPUT_PAYLOAD frame's) of `bytes`
  // bytes goes without a content hash: it is then named by the stream
  // (ContentHash::Transient) and given to AddTransient, not AddPayload. Live mode
  // takes large ones: hashing them costs more than sending them, and no
  // later segment names them again.
  virtual bool TakesTransient(uint64_t bytes) const {
    (void)bytes;
    return false;
  }
  virtual Status AddTransient(const ContentHash& name, std::string bytes) {
    (void)name, (void)bytes;
    return Status::Corruption("a transient payload in a sink that takes none");
  }
  // A RING_PAYLOAD's transient payload as its pieces come: `bytes` is the
  // whole payload, in the frontend's ring, of which the first `ready` are
  // there; called once per piece with `ready` growing, the last time equal
  // to bytes.size(). The sink may read them during the call only (the
  // frontend reuses the memory once the last call returns): live mode sends
  // a large one to the runtime piece by piece from there; by default, a copy
  // into AddTransient at the last piece.
  virtual Status AddTransientView(const ContentHash& name, std::string_view bytes, uint64_t ready) {
    if (ready < bytes.size()) return Status::OK();
    return AddTransient(name, std::string(bytes));
  }
  // A segment, with the values released after it (live mode). `part`: a
  // PART frame's, which the next segment closes (live mode).
  virtual Status AddSegment(const traces::Segment& seg, const std::vector<traces::ValueId>& released, bool part) = 0;
  // An ANSWERED frame's segment: its one value was answered from an EARLY
  // frame (live mode; anywhere else it is refused).
  virtual Status AddAnswered(const traces::Segment& seg, const std::vector<traces::ValueId>& released) {
    (void)seg, (void)released;
    return Status::Corruption("an ANSWERED frame, which only live mode's frontend sends");
  }
  // Op `op` writes its argument at schema position `position`, named `name`
  // as a keyword argument (a WRITES frame's entry; ids are the sink's).
  virtual Status AddWrite(traces::StringId op, uint32_t position, traces::StringId name) {
    (void)op, (void)position, (void)name;
    return Status::OK();
  }
};

// The sink of `genie record`: payloads written once, segments appended.
class TraceSink final : public FrontendSink {
 public:
  explicit TraceSink(traces::TraceWriter* writer) : writer_(writer) {}
  traces::StringTable& strings() override { return writer_->strings(); }
  Status AddPayload(const ContentHash& h, std::string bytes, bool) override {
    return writer_->AddPayload(h, bytes.data(), bytes.size());
  }
  Status AddSegment(const traces::Segment& seg, const std::vector<traces::ValueId>&, bool) override {
    return writer_->AddSegment(seg);
  }

 private:
  traces::TraceWriter* writer_;
};

// A TEMPLATE frame's records: RUN steps name them.
struct WordTemplate {
  struct Patch {
    // What a RUN puts at `position` (see TEMPLATE above).
    enum Kind : uint8_t { kId = 0, kArgumentId = 1, kArgumentStorage = 2, kAffine = 3, kFloat = 4, kTerm = 5 };
    uint32_t position;
    Kind kind;
    int64_t a, b;
  };
  std::vector<int64_t> words;
  std::vector<double> floats;
  std::vector<Patch> patches;
  uint64_t arguments = 0;  // the most arguments a patch reads: a RUN must bring as many
  uint64_t ts = 0;         // the most Ts a patch reads: likewise
};

// A REPLY frame (header included) carrying `message` as a failure.
std::string EncodeErrorReply(const std::string& message);

// Decodes the frames of one connection into a sink: strings are re-interned
// in the sink's table, payloads are hashed, segments are translated.
class FrontendStream {
 public:
  FrontendStream(uint32_t stream_id, FrontendSink* sink) : stream_(stream_id), sink_(sink) {}
  // Into a trace.
  FrontendStream(uint32_t stream_id, traces::TraceWriter* writer)
      : stream_(stream_id), owned_sink_(std::make_unique<TraceSink>(writer)), sink_(owned_sink_.get()) {}
  ~FrontendStream();
  FrontendStream(const FrontendStream&) = delete;
  FrontendStream& operator=(const FrontendStream&) = delete;

  // A file descriptor that came with the connection's bytes (SCM_RIGHTS),
  // owned from now on: the next RING frame maps it. One at a time; another
  // before that RING is closed.
  void ReceiveFd(int fd);

  // Handles one complete frame. A malformed frame is Status::Corruption
  // naming what was wrong; the stream must not be fed further after one.
  Status HandleFrame(FrameType type, const uint8_t* body, size_t n);

  const Hello* hello() const { return has_hello_ ? &hello_ : nullptr; }

  bool ended() const { return ended_; }
  uint64_t segments() const { return next_segment_; }

 private:
  Status HandleHello(const uint8_t* body, size_t n);
  Status HandleStrings(const uint8_t* body, size_t n);
  Status HandlePayload(const uint8_t* body, size_t n, bool single_use);
  Status HandleSegment(const uint8_t* body, size_t n, FrameType type);
  Status HandleTemplate(const uint8_t* body, size_t n);
  Status HandleWrites(const uint8_t* body, size_t n);
  Status HandleRing(const uint8_t* body, size_t n);
  Status HandleRingPayload(const uint8_t* body, size_t n);

  uint32_t stream_;
  std::unique_ptr<FrontendSink> owned_sink_;
  FrontendSink* sink_;
  Hello hello_;
  bool has_hello_ = false;
  bool ended_ = false;
  std::vector<traces::StringId> strings_;  // stream sid -> writer sid
  std::vector<ContentHash> payloads_;      // payload id -> hash, for completed payloads
  std::vector<WordTemplate> templates_;     // template id -> its records (TEMPLATE frames)
  std::string partial_payload_;            // a payload whose pieces are still arriving
  uint64_t partial_total_ = 0;
  bool partial_single_use_ = false;        // its pieces came as INPUT_PAYLOAD frames
  uint64_t transients_ = 0;                // payloads named by ContentHash::Transient so far
  int fd_ = -1;                            // received, for the RING frame to come
  char* ring_ = nullptr;                   // the RING's mapping: header, then ring_size_ bytes
  uint64_t ring_size_ = 0;
  uint64_t ring_next_ = 0;                 // the end of the last RING_PAYLOAD's bytes
  // The RING_PAYLOAD whose pieces are arriving: ready > 0 while one is.
  struct RingPiece {
    int64_t id = 0;
    uint64_t total = 0, position = 0, ready = 0;
    bool transient = false;
    ContentHash name;
  } piece_;
  uint64_t next_segment_ = 0;
};

}  // namespace genie::recorder

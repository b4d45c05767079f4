// Framing of the wire protocol (genie.proto) over a byte stream.
//
//   frame := u32 envelope_length (little-endian) | Envelope | payload
//
// where payload is exactly Envelope.payload_bytes raw bytes. A connection
// starts with the client's Hello; the runtime answers HelloReply (or Error and
// closes) before reading anything else. Requests are answered in order, so a
// client may send several (PutBlob ..., Execute) before reading the replies.
//
// Limits are checked before memory is touched: an envelope of more than
// kMaxEnvelopeBytes, or a payload larger than the reader allows, fails the
// read with Status::Corruption and the connection is dropped.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "runtime/protocol/genie.pb.h"
#include "runtime/transport/socket.h"

namespace genie::wire {

constexpr uint32_t kProtocolVersion = 5;  // 2: segment templates, execute_us; 3: CyclePush; 4: transient blobs;
                                          // 5: a template run's inline payloads are held by their slots
// Templates a session may hold (Execute.as_template).
constexpr uint32_t kMaxTemplates = 64;
constexpr uint32_t kMaxEnvelopeBytes = 64u << 20;
// Fetches up to this many bytes in all (a token) can feed a cycle (RunCycle).
constexpr size_t kMaxFedBytes = 4096;

// Writes one frame: the envelope (its payload_bytes set to `payload_len`),
// then the payload. Small frames go out in one send.
Status WriteFrame(transport::Socket& s, Envelope& env, const void* payload = nullptr, uint64_t payload_len = 0);

// Writes only the envelope of a frame whose `payload_len` bytes the caller
// sends next (in pieces, say, to report progress).
Status WriteEnvelope(transport::Socket& s, Envelope& env, uint64_t payload_len);

// Reads one envelope. Its payload is left on the stream for the caller to
// read (ReadPayload) or skip, after checking payload_bytes <= max_payload.
Status ReadEnvelope(transport::Socket& s, Envelope* env, uint64_t max_payload);

}  // namespace genie::wire

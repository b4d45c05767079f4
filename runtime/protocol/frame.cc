#include "runtime/protocol/frame.h"

#include <cstring>

namespace genie::wire {

Status WriteFrame(transport::Socket& s, Envelope& env, const void* payload, uint64_t payload_len) {
  env.set_payload_bytes(payload_len);
  std::string buf(4, '\0');
  if (!env.AppendToString(&buf)) return Status::Internal("cannot serialize a message");
  uint32_t len = static_cast<uint32_t>(buf.size() - 4);
  if (len > kMaxEnvelopeBytes) return Status::InvalidArgument("message of " + std::to_string(len) + " bytes exceeds the limit");
  std::memcpy(buf.data(), &len, 4);
  // Small payloads ride in the same send as their envelope.
  if (payload_len > 0 && payload_len <= (64u << 10)) {
    buf.append(static_cast<const char*>(payload), payload_len);
    return s.SendAll(buf.data(), buf.size());
  }
  GENIE_RETURN_IF_ERROR(s.SendAll(buf.data(), buf.size()));
  if (payload_len > 0) return s.SendAll(payload, payload_len);
  return Status::OK();
}

Status WriteEnvelope(transport::Socket& s, Envelope& env, uint64_t payload_len) {
  env.set_payload_bytes(payload_len);
  std::string buf(4, '\0');
  if (!env.AppendToString(&buf)) return Status::Internal("cannot serialize a message");
  uint32_t len = static_cast<uint32_t>(buf.size() - 4);
  std::memcpy(buf.data(), &len, 4);
  return s.SendAll(buf.data(), buf.size());
}

Status ReadEnvelope(transport::Socket& s, Envelope* env, uint64_t max_payload) {
  uint32_t len;
  GENIE_RETURN_IF_ERROR(s.RecvAll(&len, 4));
  if (len > kMaxEnvelopeBytes)
    return Status::Corruption("message length " + std::to_string(len) + " exceeds the limit " +
                              std::to_string(kMaxEnvelopeBytes));
  std::string buf(len, '\0');
  GENIE_RETURN_IF_ERROR(s.RecvAll(buf.data(), len));
  if (!env->ParseFromString(buf)) return Status::Corruption("malformed message");
  if (env->payload_bytes() > max_payload)
    return Status::Corruption("payload of " + std::to_string(env->payload_bytes()) + " bytes exceeds the limit " +
                              std::to_string(max_payload));
  return Status::OK();
}

}  // namespace genie::wire

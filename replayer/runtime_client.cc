#include "replayer/runtime_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "runtime/protocol/frame.h"

namespace genie::replayer {

constexpr uint64_t kMaxReplyPayload = 64ull << 30;
// A runtime that accepts a connection but never answers Hello is treated as unreachable after this long.
constexpr int kHelloTimeoutMs = 10000;

Status RuntimeClient::Send(wire::Envelope& env, const void* payload, uint64_t n) {
  if (cycle_due_ && !env.has_run_cycle()) GENIE_RETURN_IF_ERROR(SendCycle());
  GENIE_RETURN_IF_ERROR(wire::WriteFrame(sock_, env, payload, n));
  counters_.bytes_up += 4 + env.ByteSizeLong() + n;
  return Status::OK();
}

RuntimeClient::~RuntimeClient() {
  int fd = sock_.fd();
  if (fd < 0 || !push_due_) return;
  ::shutdown(fd, SHUT_WR);
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  char buf[4096];
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    until - std::chrono::steady_clock::now()).count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t k = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (k <= 0) break;  // the runtime closed its side (or the connection is gone)
  }
}

Status RuntimeClient::SendCycle() {
  if (!cycle_due_) return Status::OK();
  wire::Envelope env;
  env.mutable_run_cycle();
  GENIE_RETURN_IF_ERROR(Send(env));
  cycle_due_ = false;
  return Status::OK();
}

Status RuntimeClient::ReceivePush(wire::Envelope* push) {
  push_due_ = false;
  GENIE_RETURN_IF_ERROR(ReceiveOne(push));
  if (!push->has_cycle_push()) return Status::Corruption("runtime " + address_ + " pushed nothing after offering a cycle");
  return Status::OK();
}

Status RuntimeClient::Receive(wire::Envelope* env) {
  if (push_due_) {
    // Not taken: the message it answered ahead of is not a RunCycle.
    wire::Envelope push;
    GENIE_RETURN_IF_ERROR(ReceivePush(&push));
    std::string skipped(std::min<uint64_t>(push.payload_bytes(), 1u << 16), '\0');
    for (uint64_t left = push.payload_bytes(); left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, skipped.size()));
      GENIE_RETURN_IF_ERROR(sock_.RecvAll(skipped.data(), n));
      left -= n;
    }
  }
  return ReceiveOne(env);
}

Result<std::optional<ExecuteReply>> RuntimeClient::TakePush(const std::vector<const traces::TensorMeta*>& recorded) {
  if (!push_due_) return std::optional<ExecuteReply>();
  wire::Envelope push;
  GENIE_RETURN_IF_ERROR(ReceivePush(&push));
  if (!push.cycle_push().has_answer()) {
    if (push.payload_bytes() != 0) return Status::Corruption("runtime " + address_ + " sent unannounced bytes");
    return std::optional<ExecuteReply>();
  }
  ExecuteReply out;
  out.message = push.cycle_push().answer();
  cycle_due_ = true;
  // The offer stands after the cycle: its next push follows the RunCycle.
  push_due_ = !out.message.cycle_ended();
  GENIE_RETURN_IF_ERROR(ReadFetched(out.message, push.payload_bytes(), true, recorded, true, &out));
  ++counters_.round_trips;
  return std::optional<ExecuteReply>(std::move(out));
}

Status RuntimeClient::ReceiveOne(wire::Envelope* env) {
  GENIE_RETURN_IF_ERROR(wire::ReadEnvelope(sock_, env, kMaxReplyPayload));
  counters_.bytes_down += 4 + env->ByteSizeLong() + env->payload_bytes();
  if (env->has_error()) return Status::InvalidArgument("runtime " + address_ + ": " + env->error().message());
  return Status::OK();
}

Result<RuntimeClient> RuntimeClient::Connect(const std::string& address, const std::string& token) {
  RuntimeClient c;
  GENIE_ASSIGN_OR_RETURN(c.sock_, transport::Socket::Connect(address));
  c.address_ = address;
  wire::Envelope env;
  auto* h = env.mutable_hello();
  h->set_protocol_version(wire::kProtocolVersion);
  h->set_token(token);
  h->set_client("genie run");
  GENIE_RETURN_IF_ERROR(c.Send(env));
  wire::Envelope reply;
  c.sock_.SetRecvTimeout(kHelloTimeoutMs);
  Status st = c.Receive(&reply);
  c.sock_.SetRecvTimeout(0);
  ++c.counters_.round_trips;
  if (!st.ok()) return st;
  if (!reply.has_hello_reply()) return Status::Corruption("runtime " + address + " did not answer Hello");
  c.hello_ = reply.hello_reply();
  return c;
}

Result<std::vector<bool>> RuntimeClient::QueryBlobs(const std::vector<ContentHash>& hashes) {
  wire::Envelope env;
  for (const auto& h : hashes)
    env.mutable_query_blobs()->add_hashes(std::string(reinterpret_cast<const char*>(h.bytes.data()), 32));
  env.mutable_query_blobs();
  GENIE_RETURN_IF_ERROR(Send(env));
  wire::Envelope reply;
  GENIE_RETURN_IF_ERROR(Receive(&reply));
  ++counters_.round_trips;
  if (!reply.has_query_blobs_reply() || reply.query_blobs_reply().present_size() != static_cast<int>(hashes.size()))
    return Status::Corruption("runtime " + address_ + " answered the blob query wrongly");
  return std::vector<bool>(reply.query_blobs_reply().present().begin(), reply.query_blobs_reply().present().end());
}

Status RuntimeClient::PutBlobs(const std::vector<std::pair<ContentHash, std::string_view>>& blobs,
                               const std::function<void(uint64_t)>& progress) {
  constexpr size_t kPiece = 16u << 20;
  if (blobs.empty()) return Status::OK();
  GENIE_RETURN_IF_ERROR(SendCycle());
  uint64_t sent = 0;
  for (const auto& [h, bytes] : blobs) {
    if (!progress) {
      GENIE_RETURN_IF_ERROR(SendBlob(h, bytes));
      continue;
    }
    GENIE_RETURN_IF_ERROR(BeginBlob(h, bytes.size()));
    for (size_t off = 0; off < bytes.size(); off += kPiece) {
      size_t n = std::min(kPiece, bytes.size() - off);
      GENIE_RETURN_IF_ERROR(SendBytes(bytes.substr(off, n)));
      sent += n;
      progress(sent);
    }
  }
  GENIE_RETURN_IF_ERROR(ReadUploads(blobs.size()));
  ++counters_.round_trips;
  return Status::OK();
}

Status RuntimeClient::Heartbeat(uint64_t nonce, int timeout_ms) {
  wire::Envelope env;
  env.mutable_heartbeat()->set_nonce(nonce);
  GENIE_RETURN_IF_ERROR(Send(env));
  sock_.SetRecvTimeout(timeout_ms);
  wire::Envelope reply;
  Status st = Receive(&reply);
  sock_.SetRecvTimeout(0);
  GENIE_RETURN_IF_ERROR(st);
  if (!reply.has_heartbeat_reply() || reply.heartbeat_reply().nonce() != nonce)
    return Status::Corruption("runtime " + address_ + " answered a heartbeat wrongly");
  return Status::OK();
}

Result<ExecuteReply> RuntimeClient::Execute(const std::vector<std::string>& new_strings, const std::string& segment,
                                            const std::vector<uint64_t>& fetch, const std::vector<uint64_t>& release,
                                            const std::vector<std::pair<ContentHash, std::string_view>>& blobs) {
  wire::Envelope env;
  auto* ex = env.mutable_execute();
  for (const auto& s : new_strings) ex->add_new_strings(s);
  ex->set_segment(segment);
  for (uint64_t f : fetch) ex->add_fetch(f);
  for (uint64_t r : release) ex->add_release(r);
  return Execute(env, blobs);
}

Result<ExecuteReply> RuntimeClient::Execute(wire::Envelope& env,
                                            const std::vector<std::pair<ContentHash, std::string_view>>& blobs,
                                            const std::vector<const traces::TensorMeta*>& recorded) {
  GENIE_RETURN_IF_ERROR(SendExecute(env, blobs));
  return ReadExecute(blobs.size(), env.execute().from_template() != 0, recorded, true);
}

Status RuntimeClient::SendExecute(wire::Envelope& env,
                                  const std::vector<std::pair<ContentHash, std::string_view>>& blobs) {
  for (const auto& [h, bytes] : blobs) GENIE_RETURN_IF_ERROR(SendBlob(h, bytes));
  return Send(env);
}

Status RuntimeClient::SendBlob(const ContentHash& h, std::string_view bytes) {
  wire::Envelope put;
  put.mutable_put_blob()->set_hash(std::string(reinterpret_cast<const char*>(h.bytes.data()), 32));
  if (h.transient()) put.mutable_put_blob()->set_transient(true);
  return Send(put, bytes.data(), bytes.size());
}

Status RuntimeClient::BeginBlob(const ContentHash& h, uint64_t n) {
  wire::Envelope put;
  put.mutable_put_blob()->set_hash(std::string(reinterpret_cast<const char*>(h.bytes.data()), 32));
  if (h.transient()) put.mutable_put_blob()->set_transient(true);
  GENIE_RETURN_IF_ERROR(SendCycle());
  GENIE_RETURN_IF_ERROR(wire::WriteEnvelope(sock_, put, n));
  counters_.bytes_up += 4 + put.ByteSizeLong();
  return Status::OK();
}

Status RuntimeClient::SendBytes(std::string_view bytes) {
  GENIE_RETURN_IF_ERROR(sock_.SendAll(bytes.data(), bytes.size()));
  counters_.bytes_up += bytes.size();
  return Status::OK();
}

Status RuntimeClient::ReadUploads(size_t n) {
  Status upload;
  for (size_t i = 0; i < n; ++i) {
    wire::Envelope put_reply;
    Status st = Receive(&put_reply);
    if (st.code() == Status::Code::kIOError) return st;
    if (st.ok() && !put_reply.has_put_blob_reply())
      st = Status::Corruption("runtime " + address_ + " answered an upload wrongly");
    if (upload.ok()) upload = st;
  }
  return upload;
}

Result<ExecuteReply> RuntimeClient::ReadExecute(size_t blobs, bool from_template,
                                                const std::vector<const traces::TensorMeta*>& recorded, bool waited,
                                                bool cycle) {
  Status upload = ReadUploads(blobs);
  if (upload.code() == Status::Code::kIOError) return upload;
  wire::Envelope reply;
  Status st = Receive(&reply);
  if (waited) ++counters_.round_trips;
  if (st.code() == Status::Code::kIOError) return st;
  GENIE_RETURN_IF_ERROR(upload);
  GENIE_RETURN_IF_ERROR(st);
  if (!reply.has_execute_reply()) return Status::Corruption("runtime " + address_ + " answered Execute wrongly");
  ExecuteReply out;
  out.message = reply.execute_reply();
  // A reply that offers a cycle is followed by a push.
  push_due_ = out.message.cycle_runs() > 0 || (cycle && !out.message.cycle_ended());
  GENIE_RETURN_IF_ERROR(ReadFetched(out.message, reply.payload_bytes(), from_template, recorded, cycle, &out));
  return out;
}

Status RuntimeClient::ReadFetched(const wire::ExecuteReply& reply, uint64_t payload_bytes, bool from_template,
                                  const std::vector<const traces::TensorMeta*>& recorded, bool cycle, ExecuteReply* out) {
  std::vector<FetchedTensor> fetched;
  if (reply.as_recorded() || (cycle && reply.tensors_size() == 0)) {
    if (!from_template)
      return Status::Corruption("runtime " + address_ + " left out the metas of a whole segment's values");
    for (const traces::TensorMeta* m : recorded) {
      if (!m) return Status::Corruption("runtime " + address_ + " left out the meta of a value defined elsewhere");
      fetched.push_back({traces::DTypeName(m->dtype), m->sizes, std::string(m->nbytes(), '\0')});
    }
  } else {
    for (const auto& t : reply.tensors()) {
      fetched.push_back({t.dtype(), std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), std::string()});
      fetched.back().bytes.resize(t.nbytes());
    }
  }
  auto start = std::chrono::steady_clock::now();
  uint64_t total = 0;
  for (auto& f : fetched) {
    if (f.bytes.size() > payload_bytes - total)
      return Status::Corruption("runtime " + address_ + " sent fewer bytes than it announced");
    GENIE_RETURN_IF_ERROR(sock_.RecvAll(f.bytes.data(), f.bytes.size()));
    total += f.bytes.size();
    out->tensors.push_back(std::move(f));
  }
  if (total != payload_bytes) return Status::Corruption("runtime " + address_ + " sent unannounced bytes");
  out->download_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return Status::OK();
}

}  // namespace genie::replayer

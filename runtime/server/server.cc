#include "runtime/server/server.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/byte_io.h"
#include "common/log.h"
#include "runtime/executor/runtime.h"
#include "runtime/protocol/frame.h"
#include "traces/segment_codec.h"
#include "traces/segment_slots.h"

#ifndef GENIE_VERSION
#error "GENIE_VERSION must be defined by the build"
#endif

namespace genie::server {
namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

class Connection {
 public:
  Connection(transport::Socket sock, runtime::Runtime* rt, const ServeOptions& opts)
      : sock_(std::move(sock)), fd_(sock_.fd()), rt_(rt), opts_(opts) {}

  void Run() {
    Status st = Handshake();
    if (st.ok()) {
      while (!g_stop) {
        st = Handle();
        if (!st.ok()) break;
      }
    }
    if (session_) rt_->CloseSession(session_);
    if (!st.ok() && st.message().find("closed") == std::string::npos)
      Log(LogLevel::kWarn, sock_.peer() + " dropped: " + st.message());
    else
      Log(LogLevel::kInfo, sock_.peer() + " disconnected");
    ::shutdown(fd_, SHUT_RDWR);
  }

  // Unblocks Run() from another thread; Run() closes the socket itself.
  void Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

 private:
  Status Reply(wire::Envelope& env, const void* payload = nullptr, uint64_t n = 0) {
    return wire::WriteFrame(sock_, env, payload, n);
  }

  Status ReplyError(const std::string& message) {
    wire::Envelope env;
    env.mutable_error()->set_message(message);
    return Reply(env);
  }

  Status Handshake() {
    wire::Envelope env;
    GENIE_RETURN_IF_ERROR(wire::ReadEnvelope(sock_, &env, 0));
    if (!env.has_hello()) {
      ReplyError("the first message must be Hello");
      return Status::InvalidArgument("first message was not Hello");
    }
    const wire::Hello& h = env.hello();
    if (h.protocol_version() != wire::kProtocolVersion) {
      std::string msg = "protocol version " + std::to_string(h.protocol_version()) + " is not this runtime's (" +
                        std::to_string(wire::kProtocolVersion) + ")";
      ReplyError(msg);
      return Status::InvalidArgument(msg);
    }
    if (!opts_.token.empty() && h.token() != opts_.token) {
      ReplyError("the runtime refused the token");
      return Status::InvalidArgument("refused a token from " + h.client());
    }
    session_ = rt_->OpenSession();
    wire::Envelope reply;
    auto* r = reply.mutable_hello_reply();
    r->set_protocol_version(wire::kProtocolVersion);
    r->set_genie_version(GENIE_VERSION);
    r->set_torch_version(rt_->torch_version());
    r->set_device(rt_->device());
    r->set_session(session_);
    Log(LogLevel::kInfo, sock_.peer() + " hello from " + h.client() + ", session " + std::to_string(session_));
    return Reply(reply);
  }

  Status Handle() {
    wire::Envelope env;
    GENIE_RETURN_IF_ERROR(wire::ReadEnvelope(sock_, &env, opts_.max_payload));
    switch (env.body_case()) {
      case wire::Envelope::kQueryBlobs: {
        wire::Envelope reply;
        auto* r = reply.mutable_query_blobs_reply();
        uint64_t present = 0;
        for (const auto& h : env.query_blobs().hashes()) {
          ContentHash ch;
          if (!ContentHash::FromBytes(h.data(), h.size(), &ch)) return Status::Corruption("a blob hash is not 32 bytes");
          bool has = rt_->HasBlob(session_, ch);
          present += has;
          r->add_present(has);
        }
        Log(LogLevel::kInfo, sock_.peer() + " query " + std::to_string(env.query_blobs().hashes_size()) + " blobs, " +
                                 std::to_string(present) + " present");
        return Reply(reply);
      }
      case wire::Envelope::kPutBlob: {
        ContentHash ch;
        const std::string& h = env.put_blob().hash();
        if (!ContentHash::FromBytes(h.data(), h.size(), &ch)) return Status::Corruption("a blob hash is not 32 bytes");
        if (opts_.max_memory > 0 && env.payload_bytes() > opts_.max_memory) {
          ReplyError("a blob of " + std::to_string(env.payload_bytes()) + " bytes exceeds the runtime's memory limit");
          return Status::InvalidArgument("refused a blob larger than --max-memory");
        }
        // Received straight into the buffer the runtime keeps (a CPU tensor's storage).
        runtime::BlobBuffer bytes = rt_->AllocateBlob(env.payload_bytes());
        GENIE_RETURN_IF_ERROR(sock_.RecvAll(bytes.data.get(), bytes.size));
        uint64_t n = bytes.size;
        auto stored = rt_->PutBlob(session_, ch, std::move(bytes));
        if (!stored.ok()) return ReplyError(stored.status().message());
        Log(LogLevel::kInfo, sock_.peer() + " put blob " + ch.Hex(16) + " (" + std::to_string(n) + " bytes)");
        wire::Envelope reply;
        reply.mutable_put_blob_reply()->set_stored(stored.value());
        return Reply(reply);
      }
      case wire::Envelope::kExecute: return HandleExecute(env.execute(), env.payload_bytes());
      case wire::Envelope::kHeartbeat: {
        wire::Envelope reply;
        reply.mutable_heartbeat_reply()->set_nonce(env.heartbeat().nonce());
        return Reply(reply);
      }
      default:
        ReplyError("unexpected message");
        return Status::Corruption("unexpected message of kind " + std::to_string(env.body_case()));
    }
  }

  // A segment this session keeps to run again from a few bytes (Execute.as_template).
  struct Template {
    traces::Segment seg;
    std::vector<uint64_t> release;
    traces::SlotPredictor slots;
    std::vector<ContentHash> hashes;
    traces::ReleasePredictor release_ids;
  };

  Status HandleExecute(const wire::Execute& ex, uint64_t payload_bytes) {
    if (payload_bytes != 0) return Status::Corruption("Execute carries no payload");
    for (const auto& s : ex.new_strings()) strings_.Intern(s);
    if (ex.from_template() != 0) {
      auto t = FromTemplate(ex);
      if (!t.ok()) return ReplyError(t.status().message());
      std::vector<uint64_t> fetch;
      for (const auto& m : (*t)->seg.materialized) fetch.push_back(m.id);
      return Run((*t)->seg, fetch, (*t)->release, true);
    }
    traces::Segment seg;
    ByteReader in(ex.segment());
    Status st = traces::DecodeSegment(&in, strings_, &seg);
    if (!st.ok()) return ReplyError("malformed segment: " + st.message());
    st = rt_->Check(seg, strings_);
    if (!st.ok()) return ReplyError(st.message());
    std::vector<uint64_t> fetch(ex.fetch().begin(), ex.fetch().end());
    std::vector<uint64_t> release(ex.release().begin(), ex.release().end());
    if (uint32_t id = ex.as_template(); id != 0) {
      if (id > wire::kMaxTemplates)
        return ReplyError("template " + std::to_string(id) + " is out of range (1.." +
                          std::to_string(wire::kMaxTemplates) + ")");
      traces::SegmentSlots slots;
      traces::Flatten(seg, &slots);
      templates_[id] = std::make_unique<Template>(
          Template{seg, release, traces::SlotPredictor(std::move(slots.ints)), std::move(slots.hashes),
                   traces::ReleasePredictor(release, traces::FirstDefined(seg))});
    }
    return Run(seg, fetch, release, false);
  }

  // Brings the template named by `ex` up to this run: its slots, payloads and fingerprint.
  Result<Template*> FromTemplate(const wire::Execute& ex) {
    auto it = templates_.find(ex.from_template());
    if (it == templates_.end())
      return Status::InvalidArgument("template " + std::to_string(ex.from_template()) + " is not defined in this session");
    Template& t = *it->second;
    std::vector<int64_t> ints;
    Status st = t.slots.Decode(ex.slot_diffs(), &ints);
    if (!st.ok()) return Status::InvalidArgument("malformed template run: " + st.message());
    for (const auto& change : ex.payloads()) {
      if (change.index() >= t.hashes.size())
        return Status::InvalidArgument("malformed template run: payload " + std::to_string(change.index()) +
                                       " of " + std::to_string(t.hashes.size()));
      ContentHash& h = t.hashes[change.index()];
      if (!change.data().empty()) {
        h = ContentHash::Of(change.data().data(), change.data().size());
        GENIE_RETURN_IF_ERROR(rt_->PutBlob(session_, h, runtime::BlobBuffer::Copy(change.data()), true).status());
      } else if (!ContentHash::FromBytes(change.hash().data(), change.hash().size(), &h)) {
        return Status::InvalidArgument("malformed template run: a payload hash is not 32 bytes");
      }
    }
    GENIE_RETURN_IF_ERROR(traces::Assign(ints, t.hashes, &t.seg));
    st = t.release_ids.Decode(ex.release_diffs(), traces::FirstDefined(t.seg), &t.release);
    if (!st.ok()) return Status::InvalidArgument("malformed template run: " + st.message());
    // The structure holds sizes and integer arguments: a longer KV cache is another graph.
    GENIE_ASSIGN_OR_RETURN(t.seg.fingerprint, traces::Fingerprint(t.seg));
    return &t;
  }

  // Executes `seg` and replies. `from_template`: the reply may leave out
  // tensor infos that the segment's own metas give (ExecuteReply.as_recorded).
  Status Run(const traces::Segment& seg, const std::vector<uint64_t>& fetch, const std::vector<uint64_t>& release,
             bool from_template) {
    auto res = rt_->Execute(session_, seg, strings_, fetch, release);
    if (!res.ok() && !release.empty()) rt_->Release(session_, release);
    if (!res.ok()) {
      Log(LogLevel::kWarn, sock_.peer() + " segment " + std::to_string(seg.index) + " failed: " + res.status().message());
      return ReplyError(res.status().message());
    }
    wire::Envelope reply;
    auto* r = reply.mutable_execute_reply();
    std::string payload;
    bool as_recorded = from_template;
    for (size_t i = 0; i < res->fetched.size() && as_recorded; ++i) {
      const traces::TensorMeta* meta = traces::DefinedMeta(seg, fetch[i]);
      as_recorded = meta && meta->dtype == res->fetched[i].dtype && meta->sizes == res->fetched[i].sizes;
    }
    r->set_as_recorded(as_recorded);
    for (const auto& t : res->fetched) {
      if (!as_recorded) {
        auto* info = r->add_tensors();
        info->set_dtype(traces::DTypeName(t.dtype));
        for (int64_t s : t.sizes) info->add_sizes(s);
        info->set_nbytes(t.bytes.size());
      }
      payload += t.bytes;
    }
    for (const auto& a : res->scalars) {
      auto* s = r->add_scalars();
      if (a.kind == traces::Arg::Kind::kBool) s->set_b(a.i != 0);
      else if (a.kind == traces::Arg::Kind::kInt) s->set_i(a.i);
      else if (a.kind == traces::Arg::Kind::kFloat) s->set_f(a.f);
    }
    r->set_execute_us(res->execute_us);
    r->set_graph(res->graph);
    if (LogEnabled(LogLevel::kInfo)) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), " execute segment %llu: %zu ops in %.3f ms, %zu bytes back",
                    static_cast<unsigned long long>(seg.index), seg.num_ops(), res->execute_us / 1e3, payload.size());
      Log(LogLevel::kInfo, sock_.peer() + buf);
    }
    return Reply(reply, payload.data(), payload.size());
  }

  transport::Socket sock_;
  int fd_;
  runtime::Runtime* rt_;
  const ServeOptions& opts_;
  uint64_t session_ = 0;
  traces::StringTable strings_;
  std::unordered_map<uint32_t, std::unique_ptr<Template>> templates_;
};

}  // namespace

Status Serve(const ServeOptions& options, const std::function<void(int port)>& on_listening) {
  GENIE_ASSIGN_OR_RETURN(auto rt, runtime::Runtime::Create(options.device, options.max_memory, options.tf32_conv));
  GENIE_ASSIGN_OR_RETURN(auto listener, transport::Listener::Listen(options.listen));
  struct sigaction sa{};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  Log(LogLevel::kInfo, "serving on port " + std::to_string(listener.port()) + ", device " + rt->device() + ", torch " +
                           rt->torch_version());
  on_listening(listener.port());

  struct Worker {
    std::shared_ptr<Connection> conn;
    std::shared_ptr<std::atomic<bool>> done;
    std::thread thread;
  };
  std::vector<Worker> workers;
  while (!g_stop) {
    // Join the threads of connections that have ended.
    for (auto it = workers.begin(); it != workers.end();) {
      if (*it->done) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    pollfd p{listener.fd(), POLLIN, 0};
    int rc = ::poll(&p, 1, 200);
    if (rc <= 0) continue;
    auto sock = listener.Accept();
    if (!sock.ok()) {
      Log(LogLevel::kWarn, sock.status().message());
      continue;
    }
    if (!sock->valid()) continue;
    Log(LogLevel::kInfo, sock->peer() + " connected");
    Worker w;
    w.conn = std::make_shared<Connection>(std::move(sock).value(), rt.get(), options);
    w.done = std::make_shared<std::atomic<bool>>(false);
    w.thread = std::thread([conn = w.conn, done = w.done] {
      conn->Run();
      *done = true;
    });
    workers.push_back(std::move(w));
  }
  Log(LogLevel::kInfo, "shutting down");
  for (auto& w : workers) w.conn->Shutdown();
  for (auto& w : workers) w.thread.join();
  return Status::OK();
}

}  // namespace genie::server

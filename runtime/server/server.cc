#include "runtime/server/server.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
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
// A cycle's answer is pushed before its RunCycle comes up to this size (a
// token, a row of logits); a larger one is only sent when asked for.
constexpr size_t kMaxPushBytes = 1u << 20;

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
    // A RunCycle answered by a push cannot be answered again (see Push).
    if (answered_) return Status::Internal("a cycle answered ahead failed to run: " + message);
    wire::Envelope env;
    env.mutable_error()->set_message(message);
    return Reply(env);
  }

  // Reads `n` bytes of a message's payload and drops them.
  Status Discard(uint64_t n) {
    std::vector<char> sink(static_cast<size_t>(std::min<uint64_t>(n, 1u << 20)));
    for (uint64_t left = n; left > 0;) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(left, sink.size()));
      GENIE_RETURN_IF_ERROR(sock_.RecvAll(sink.data(), k));
      left -= k;
    }
    return Status::OK();
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
    // While a loop's steps run ahead, the next request (its RunCycle) comes
    // within a step's time: the connection polls for it before it sleeps
    // (Socket::SetSpin). Other requests (a training step's parts, a
    // program's start-up) are waited for asleep, leaving the CPU to the
    // program that makes them.
    sock_.SetSpin(offered_ ? opts_.spin_us : 0);
    GENIE_RETURN_IF_ERROR(wire::ReadEnvelope(sock_, &env, opts_.max_payload));
    // Any message withdraws the offer of a cycle (a cycle that runs renews
    // it) and voids the answer pushed for it.
    offered_ = offered_ && env.has_run_cycle();
    Pushed pushed = std::move(pushed_);
    pushed_ = {};
    answered_ = pushed.ready && env.has_run_cycle() ? &pushed : nullptr;
    Status st = Dispatch(env);
    answered_ = nullptr;
    if (st.ok() && push_due_) {
      st = Push();
      if (st.ok() && pushed_.ready && opts_.run_ahead_steps > 1) RunDeeper();
    }
    return st;
  }

  Status Dispatch(const wire::Envelope& env) {
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
          // Read past it, so that the client, still writing it, gets this answer and the session goes on.
          GENIE_RETURN_IF_ERROR(Discard(env.payload_bytes()));
          Log(LogLevel::kWarn, sock_.peer() + " refused a blob of " + std::to_string(env.payload_bytes()) +
                                   " bytes (--max-memory " + std::to_string(opts_.max_memory) + ")");
          return ReplyError("a blob of " + std::to_string(env.payload_bytes()) +
                            " bytes exceeds the runtime's memory limit of " + std::to_string(opts_.max_memory) +
                            " bytes (genie serve --max-memory)");
        }
        const uint64_t n = env.payload_bytes();
        if (env.put_blob().transient()) {
          // A name the client gave a single-use input's bytes: no hash to check, nothing shared.
          if (!ch.transient()) return Status::Corruption("a transient blob's name is not a transient name");
          bool lost = false;  // the connection, while reading
          Status st = rt_->ReceiveTransient(session_, ch, n, [&](char* into, size_t len) {
            Status read = sock_.RecvAll(into, len);
            lost = !read.ok();
            return read;
          });
          if (lost) return st;
          if (!st.ok()) return ReplyError(st.message());
          Log(LogLevel::kDebug, sock_.peer() + " put transient " + ch.Hex(16) + " (" + std::to_string(n) + " bytes)");
          wire::Envelope reply;
          reply.mutable_put_blob_reply()->set_stored(true);
          return Reply(reply);
        }
        // Received straight into the buffer the runtime keeps (a CPU tensor's storage).
        runtime::BlobBuffer bytes = rt_->AllocateBlob(n);
        GENIE_RETURN_IF_ERROR(sock_.RecvAll(bytes.data.get(), bytes.size));
        auto stored = rt_->PutBlob(session_, ch, std::move(bytes));
        if (!stored.ok()) return ReplyError(stored.status().message());
        Log(LogLevel::kInfo, sock_.peer() + " put blob " + ch.Hex(16) + " (" + std::to_string(n) + " bytes)");
        wire::Envelope reply;
        reply.mutable_put_blob_reply()->set_stored(stored.value());
        return Reply(reply);
      }
      case wire::Envelope::kExecute: return HandleExecute(env.execute(), env.payload_bytes());
      case wire::Envelope::kRunCycle:
        if (env.payload_bytes() != 0) return Status::Corruption("RunCycle carries no payload");
        return HandleCycle();
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
  // A payload that a run of it carried inline (a batch, a token) is held
  // for the session while its slot names it (Runtime::HoldPayload), and no
  // longer: a loop's fresh small inputs do not pile up on the runtime. The
  // client counts on these bytes only for slots its runs leave unchanged.
  struct Template {
    traces::Segment seg;
    std::vector<uint64_t> release;
    traces::SlotPredictor slots;
    std::vector<ContentHash> hashes;
    traces::ReleasePredictor release_ids;
    std::vector<int64_t> ints;  // the slots of its latest run
    int defines_only = -1;      // Runtime::DefinesOnly of its segment, once asked: 0 or 1
    std::vector<bool> held;     // by hash slot: its payload is held for it
  };

  // Run-ahead. A decode loop sends the same template runs at every step and
  // closes the step with a fetch (the next token), whose bytes come back up
  // inline, as a payload of the next step. Once two steps in a row were the
  // same cycle of runs, every payload change in the second being the bytes
  // fetched at the end of the first, the runtime runs the next cycle as soon
  // as it has answered the last: each template with its predicted slots and
  // the bytes just fetched in place of those payloads, keeping its results
  // and releasing nothing. A request that arrives exactly as predicted (the
  // template, slots and payload hashes of the front run) is answered from
  // that run; any other drops every run made ahead, freeing what they
  // defined, and runs as usual. Only segments that change nothing but the
  // values they define run ahead (Runtime::DefinesOnly), and only into ids
  // the session does not hold. When every template of the cycle is such a
  // segment, the reply also offers the next cycle (ExecuteReply.cycle_runs):
  // the client may send it as one RunCycle, which stands for those runs
  // exactly as predicted (HandleCycle). Once the cycle has run ahead, its
  // answer goes down before the RunCycle comes (Push), and the cycle after
  // it runs as well (RunDeeper, two steps of run-ahead): the RunCycle then
  // finds the answer it pushes next ready.
  struct Seen {
    uint32_t id;
    std::vector<uint32_t> fed;  // its payload changes that carried the bytes fetched before
    bool operator==(const Seen& o) const { return id == o.id && fed == o.fed; }
  };
  struct Ahead {
    uint32_t id;
    std::vector<int64_t> ints;
    std::vector<ContentHash> hashes;
    std::vector<uint64_t> defined;
    std::vector<uint64_t> fetch;
    std::vector<uint64_t> dropped;  // values it defined and freed at once (predicted released)
    runtime::ExecuteResult result;
  };

  enum class ReplyKind { kWhole, kTemplateRun, kCycle };

  Status HandleExecute(const wire::Execute& ex, uint64_t payload_bytes) {
    if (payload_bytes != 0) return Status::Corruption("Execute carries no payload");
    for (const auto& s : ex.new_strings()) strings_.Intern(s);
    if (ex.from_template() != 0) return HandleTemplateRun(ex);
    DropAhead();
    ForgetCycles();
    traces::Segment seg;
    ByteReader in(ex.segment());
    Status st = traces::DecodeSegment(&in, strings_, &seg);
    if (!st.ok()) return ReplyError("malformed segment: " + st.message());
    st = rt_->Check(seg, strings_);
    if (!st.ok()) return ReplyError(st.message());
    std::vector<uint64_t> fetch(ex.fetch().begin(), ex.fetch().end());
    std::vector<uint64_t> release(ex.release().begin(), ex.release().end());
    bool early = ex.fetch_early_size() > 0;
    if (early && !fetch.empty()) return ReplyError("fetch_early on a segment that fetches values itself");
    fetch.insert(fetch.end(), ex.fetch_early().begin(), ex.fetch_early().end());
    if (uint32_t id = ex.as_template(); id != 0) {
      if (id > wire::kMaxTemplates)
        return ReplyError("template " + std::to_string(id) + " is out of range (1.." +
                          std::to_string(wire::kMaxTemplates) + ")");
      traces::SegmentSlots slots;
      traces::Flatten(seg, &slots);
      std::vector<int64_t> ints = slots.ints;
      std::vector<bool> held(slots.hashes.size(), false);
      DropTemplate(id);
      templates_[id] = std::make_unique<Template>(
          Template{seg, release, traces::SlotPredictor(std::move(slots.ints)), std::move(slots.hashes),
                   traces::ReleasePredictor(release, traces::FirstDefined(seg)), std::move(ints), -1,
                   std::move(held)});
    }
    if (!ex.in_order() && !early) {
      GENIE_ASSIGN_OR_RETURN(bool answered, AnswerFirst(seg, fetch, release, ReplyKind::kWhole));
      if (answered) return Status::OK();
    }
    auto res = Execute(seg, fetch, release);
    if (!res.ok()) return ReplyError(res.status().message());
    return ReplyResult(seg, fetch, *res, ReplyKind::kWhole, false);
  }

  // Answers a request for `seg` before running it, when the values it
  // fetches are there already and running it cannot change them
  // (Runtime::FetchBefore): the program goes on while `seg` runs. A failure
  // of `seg` then answers the next request that runs anything, as a part's
  // failure does (deferred_error_). A template run closes its cycle first
  // (run-ahead follows the run). Returns whether it answered.
  Result<bool> AnswerFirst(const traces::Segment& seg, const std::vector<uint64_t>& fetch,
                           const std::vector<uint64_t>& release, ReplyKind kind) {
    if (fetch.empty() || !deferred_error_.empty()) return false;
    auto values = rt_->FetchBefore(session_, seg, strings_, fetch);
    if (!values) return false;
    runtime::ExecuteResult early;
    early.fetched = std::move(*values);
    bool ahead = kind == ReplyKind::kTemplateRun && opts_.run_ahead && EndCycle(early);
    GENIE_RETURN_IF_ERROR(ReplyResult(seg, fetch, early, kind, false, 0, true));
    auto res = Execute(seg, {}, release);
    if (!res.ok()) {
      deferred_error_ = res.status().message();
      DropAhead();
      ForgetCycles();
      return true;
    }
    carried_us_ += res->execute_us;
    if (ahead) RunAhead();
    return true;
  }

  // A template run as executed: its template, what it fetched, its result.
  struct Ran {
    Template* t = nullptr;
    std::vector<uint64_t> fetch;
    runtime::ExecuteResult result;
    bool ahead = false;     // answered from a run made ahead
    bool answered = false;  // answered before it ran (AnswerFirst)
  };

  Status HandleTemplateRun(const wire::Execute& ex) {
    auto ran = RunTemplate(ex, true);
    if (!ran.ok()) return ReplyError(ran.status().message());
    if (ran->answered) return Status::OK();
    // Values fetched early (Execute.fetch_early) close no cycle and are listed.
    if (ex.fetch_early_size() > 0)
      return ReplyResult(ran->t->seg, ran->fetch, ran->result, ReplyKind::kWhole, ran->ahead);
    bool ahead = !ran->fetch.empty() && opts_.run_ahead && EndCycle(ran->result);
    GENIE_RETURN_IF_ERROR(ReplyResult(ran->t->seg, ran->fetch, ran->result, ReplyKind::kTemplateRun, ran->ahead));
    if (ahead) RunAhead();
    return Status::OK();
  }

  // RunCycle: the runs of the cycle offered, each as predicted and fed the
  // bytes fetched last, as NoteRun saw them; one reply, the last run's.
  Status HandleCycle() {
    // The cycle offered with an answer given first, whose run then failed.
    if (!deferred_error_.empty()) return Abandon(TakeDeferredError());
    if (!offered_ || last_cycle_.empty()) return Abandon("no cycle was offered to run");
    const std::vector<Seen> cycle = last_cycle_;
    uint64_t execute_us = 0;
    uint32_t ahead = 0;
    for (size_t i = 0; i < cycle.size(); ++i) {
      wire::Execute run;
      run.set_from_template(cycle[i].id);
      for (uint32_t index : cycle[i].fed) {
        auto* change = run.add_payloads();
        change->set_index(index);
        change->set_data(fetched_);
      }
      auto ran = RunTemplate(run, false);
      if (!ran.ok()) return ReplyError(ran.status().message());
      if (!cycle[i].fed.empty() && fetched_.empty()) return Abandon("the cycle offered is fed by no fetch");
      execute_us += ran->result.execute_us;
      ahead += ran->ahead;
      if (ran->fetch.empty() != (i + 1 < cycle.size()))
        return Abandon("the cycle offered no longer fetches at its end");
      if (i + 1 < cycle.size()) continue;
      ran->result.execute_us = static_cast<uint32_t>(std::min<uint64_t>(execute_us, UINT32_MAX));
      bool run_ahead = EndCycle(ran->result);
      GENIE_RETURN_IF_ERROR(ReplyResult(ran->t->seg, ran->fetch, ran->result, ReplyKind::kCycle, false, ahead));
      if (run_ahead) RunAhead();
    }
    return Status::OK();
  }

  std::string TakeDeferredError() {
    std::string message = std::move(deferred_error_);
    deferred_error_.clear();
    return message;
  }

  // A cycle that cannot run: drops the runs made ahead, forgets the cycles, replies `message`.
  Status Abandon(const std::string& message) {
    DropAhead();
    ForgetCycles();
    return ReplyError(message);
  }

  // Runs the template run `ex` (from a run made ahead when it matches;
  // `answer_first`: answered before it runs where AnswerFirst can); on
  // failure, drops the runs made ahead and forgets the cycles.
  Result<Ran> RunTemplate(const wire::Execute& ex, bool answer_first) {
    auto found = FromTemplate(ex);
    if (!found.ok()) {
      DropAhead();
      ForgetCycles();
      return found.status();
    }
    Ran ran;
    ran.t = *found;
    Template& t = **found;
    for (const auto& m : t.seg.materialized) ran.fetch.push_back(m.id);
    if (ex.fetch_early_size() > 0) {
      if (!ran.fetch.empty()) {
        DropAhead();
        ForgetCycles();
        return Status::InvalidArgument("fetch_early on a template run that fetches values itself");
      }
      ran.fetch.assign(ex.fetch_early().begin(), ex.fetch_early().end());
      answer_first = false;
    }
    if (opts_.run_ahead) NoteRun(ex);
    if (!ahead_.empty()) {
      Ahead& a = ahead_.front();
      if (a.id == ex.from_template() && a.ints == t.ints && a.hashes == t.hashes && a.fetch == ran.fetch &&
          Within(a.dropped, t.release)) {
        ran.result = std::move(a.result);
        ahead_.pop_front();
        if (!t.release.empty()) rt_->Release(session_, t.release);
        ran.ahead = true;
      } else {
        DropAhead();
      }
    }
    if (!ran.ahead && answer_first && !ex.in_order()) {
      GENIE_ASSIGN_OR_RETURN(ran.answered, AnswerFirst(t.seg, ran.fetch, t.release, ReplyKind::kTemplateRun));
      if (ran.answered) return ran;
    }
    if (!ran.ahead) {
      auto res = Execute(t.seg, ran.fetch, t.release);
      if (!res.ok()) {
        DropAhead();
        ForgetCycles();
        return res.status();
      }
      ran.result = std::move(*res);
    }
    return ran;
  }

  // Run-ahead bookkeeping of a template run as received: which of its
  // payload changes carried exactly the bytes fetched before.
  void NoteRun(const wire::Execute& ex) {
    Seen seen{ex.from_template(), {}};
    for (const auto& change : ex.payloads()) {
      // The bytes inline, or their hash when the runtime holds them already (a token seen before).
      bool fed = !fetched_.empty() &&
                 (change.data().empty() ? change.hash() == std::string_view(reinterpret_cast<const char*>(
                                                               fetched_hash_.bytes.data()), fetched_hash_.bytes.size())
                                        : change.data() == fetched_);
      if (fed) seen.fed.push_back(change.index());
      else cycle_fed_ = false;
    }
    cycle_.push_back(std::move(seen));
  }

  // A run that fetched `result` closed the cycle. Returns whether it
  // repeated the one before and was fed by its fetch: then RunAhead runs
  // the next once the reply is out, and when every template of the cycle
  // defines values only, the next is offered as one RunCycle
  // (offered_). Only a small fetch (a token; up to kMaxFedBytes) is kept to
  // feed the next: a large one is neither copied nor hashed.
  bool EndCycle(const runtime::ExecuteResult& result) {
    bool repeat = cycle_fed_ && cycle_ == last_cycle_;
    if (cycle_fed_) last_cycle_ = std::move(cycle_);
    else last_cycle_.clear();
    cycle_.clear();
    cycle_fed_ = true;
    fetched_ = FedBytes(result);
    fetched_hash_ = ContentHash::Of(fetched_.data(), fetched_.size());
    repeat = repeat && ahead_.empty();
    offered_ = repeat && Feeds(result, last_cycle_) && DefinesOnly(last_cycle_);
    if (!repeat) DropDeeper();
    return repeat;
  }

  // The bytes `result` fetched, kept to feed the cycle run next: "" when they are above kMaxFedBytes.
  static std::string FedBytes(const runtime::ExecuteResult& result) {
    std::string bytes;
    if (FetchedBytes(result) <= wire::kMaxFedBytes)
      for (const auto& f : result.fetched) bytes += f.bytes;
    return bytes;
  }

  static size_t FetchedBytes(const runtime::ExecuteResult& result) {
    size_t n = 0;
    for (const auto& f : result.fetched) n += f.bytes.size();
    return n;
  }

  // Whether what `result` fetched can feed `cycle` run next: bytes kept to feed it, or a cycle fed nothing.
  static bool Feeds(const runtime::ExecuteResult& result, const std::vector<Seen>& cycle) {
    size_t n = FetchedBytes(result);
    return (n > 0 && n <= wire::kMaxFedBytes) ||
           std::all_of(cycle.begin(), cycle.end(), [](const Seen& s) { return s.fed.empty(); });
  }

  // Whether every template of `cycle` changes nothing but the values it defines (Runtime::DefinesOnly).
  bool DefinesOnly(const std::vector<Seen>& cycle) {
    for (const Seen& seen : cycle) {
      auto it = templates_.find(seen.id);
      if (it == templates_.end()) return false;
      Template& t = *it->second;
      if (t.defines_only < 0) t.defines_only = rt_->DefinesOnly(t.seg, strings_) ? 1 : 0;
      if (!t.defines_only) return false;
    }
    return true;
  }

  void ForgetCycles() {
    cycle_.clear();
    last_cycle_.clear();
    cycle_fed_ = true;
    fetched_.clear();
    offered_ = false;
  }

  // Runs the next cycle ahead (see Seen): the one RunDeeper ran already, or
  // now, up to its first template that changes more than the values it defines.
  void RunAhead() {
    if (!deeper_.empty()) {
      ahead_.swap(deeper_);  // ahead_ is empty: EndCycle saw every run of it taken
      // Its templates' segments hold the runs of the cycle just taken: Push
      // reads the metas of the runs it answers for.
      for (const Ahead& a : ahead_)
        if (!traces::Assign(a.ints, a.hashes, &templates_.at(a.id)->seg).ok()) return DropAhead();
      return;
    }
    RunCycleAhead(1, fetched_, fetched_hash_, &ahead_);
  }

  // With two steps of run-ahead (ServeOptions::run_ahead_steps): once the
  // next cycle's answer is pushed, runs the cycle after it too, fed by what
  // the next one fetched, while the program works on that answer. Its runs
  // wait in deeper_ until the next cycle's requests have taken theirs
  // (RunAhead); a request that does not match drops both (DropAhead).
  void RunDeeper() {
    if (!deeper_.empty() || ahead_.empty() || ahead_.size() != last_cycle_.size()) return;
    const runtime::ExecuteResult& next = ahead_.back().result;
    if (!Feeds(next, last_cycle_)) return;
    std::string fed = FedBytes(next);
    RunCycleAhead(2, fed, ContentHash::Of(fed.data(), fed.size()), &deeper_);
    if (deeper_.size() != last_cycle_.size()) {
      DropDeeper();  // half a cycle would be taken for the whole
      return;
    }
    if (LogEnabled(LogLevel::kInfo))
      Log(LogLevel::kInfo, sock_.peer() + " ran the cycle after the next ahead (" + std::to_string(deeper_.size()) +
                               (deeper_.size() == 1 ? " run)" : " runs)"));
  }

  // Runs last_cycle_ as it is predicted `steps` runs on into `into`, each
  // payload it was fed taking `fed`, up to its first template that changes
  // more than the values it defines.
  void RunCycleAhead(int64_t steps, const std::string& fed, const ContentHash& fed_hash, std::deque<Ahead>* into) {
    for (const Seen& seen : last_cycle_) {
      auto it = templates_.find(seen.id);
      if (it == templates_.end()) break;
      Template& t = *it->second;
      if (t.defines_only < 0) t.defines_only = rt_->DefinesOnly(t.seg, strings_) ? 1 : 0;
      if (!t.defines_only) break;
      Ahead a{seen.id, t.slots.Prediction(steps), t.hashes, {}, {}, {}, {}};
      if (!seen.fed.empty()) {
        bool inside = true;
        for (uint32_t i : seen.fed) {
          if (i >= a.hashes.size()) inside = false;
          else a.hashes[i] = fed_hash;
        }
        if (!inside) break;
      }
      // The bytes fed are held while the run binds them; its request brings them again.
      if (!seen.fed.empty() && !rt_->HoldPayload(session_, fed_hash, fed).ok()) break;
      struct Unhold {
        runtime::Runtime* rt;
        uint64_t session;
        const ContentHash* h;
        ~Unhold() {
          if (h) rt->ReleasePayload(session, *h);
        }
      } unhold{rt_, session_, seen.fed.empty() ? nullptr : &fed_hash};
      // The template's segment takes the predicted run; a request re-assigns its own.
      if (!traces::Assign(a.ints, a.hashes, &t.seg).ok()) break;
      if (rt_->UsesFingerprints()) {
        auto fingerprint = traces::Fingerprint(t.seg);
        if (!fingerprint.ok()) break;
        t.seg.fingerprint = *fingerprint;
      }
      a.defined = DefinedIds(t.seg);
      if (rt_->HoldsAny(session_, a.defined)) break;
      for (const auto& m : t.seg.materialized) a.fetch.push_back(m.id);
      // The values it defines that its predicted release list frees go with
      // the run (on CUDA, never copied out of the graph); the request must
      // release them too. Values from before it are freed by the request.
      std::vector<uint64_t> predicted;
      traces::ReleasePredictor releases = t.release_ids;
      if (!releases.Decode("", traces::FirstDefined(t.seg), &predicted).ok()) break;
      std::unordered_set<uint64_t> defined(a.defined.begin(), a.defined.end());
      for (uint64_t id : predicted)
        if (defined.count(id)) a.dropped.push_back(id);
      auto res = rt_->Execute(session_, t.seg, strings_, a.fetch, a.dropped);
      if (!res.ok()) {
        rt_->Release(session_, a.defined);
        break;
      }
      a.result = std::move(*res);
      into->push_back(std::move(a));
    }
  }

  void DropAhead() {
    for (const Ahead& a : ahead_) rt_->Release(session_, a.defined);
    ahead_.clear();
    DropDeeper();
  }

  void DropDeeper() {
    for (const Ahead& a : deeper_) rt_->Release(session_, a.defined);
    deeper_.clear();
  }

  // Whether every id of `some` is in `all`.
  static bool Within(const std::vector<uint64_t>& some, const std::vector<uint64_t>& all) {
    if (some.empty()) return true;
    std::unordered_set<uint64_t> in(all.begin(), all.end());
    for (uint64_t id : some)
      if (!in.count(id)) return false;
    return true;
  }

  static std::vector<uint64_t> DefinedIds(const traces::Segment& seg) {
    std::vector<uint64_t> ids;
    for (const auto& step : seg.steps) {
      if (step.kind == traces::Step::Kind::kInput) ids.push_back(step.input.id);
      else
        for (const auto& out : step.op.outputs)
          if (out.is_tensor) ids.push_back(out.id);
    }
    return ids;
  }

  // Forgets template `id`, giving back the payloads its slots hold.
  void DropTemplate(uint32_t id) {
    auto it = templates_.find(id);
    if (it == templates_.end()) return;
    const Template& t = *it->second;
    for (size_t i = 0; i < t.held.size(); ++i)
      if (t.held[i]) rt_->ReleasePayload(session_, t.hashes[i]);
    templates_.erase(it);
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
      ContentHash h;
      bool held = !change.data().empty();
      if (held) {
        h = ContentHash::Of(change.data().data(), change.data().size());
        GENIE_RETURN_IF_ERROR(rt_->HoldPayload(session_, h, change.data()));
      } else if (!ContentHash::FromBytes(change.hash().data(), change.hash().size(), &h)) {
        return Status::InvalidArgument("malformed template run: a payload hash is not 32 bytes");
      }
      // The slot's payload before, held for it, goes once the new one is held (they may be the same).
      if (t.held[change.index()]) rt_->ReleasePayload(session_, t.hashes[change.index()]);
      t.hashes[change.index()] = h;
      t.held[change.index()] = held;
    }
    GENIE_RETURN_IF_ERROR(traces::Assign(ints, t.hashes, &t.seg));
    t.ints = std::move(ints);
    st = t.release_ids.Decode(ex.release_diffs(), traces::FirstDefined(t.seg), &t.release);
    if (!st.ok()) return Status::InvalidArgument("malformed template run: " + st.message());
    // The structure holds sizes and integer arguments: a longer KV cache is another graph.
    if (rt_->UsesFingerprints()) {
      GENIE_ASSIGN_OR_RETURN(t.seg.fingerprint, traces::Fingerprint(t.seg));
    }
    return &t;
  }

  // Executes `seg`; on failure the values in `release` are freed all the
  // same. After a segment answered first has failed, fails with its error
  // instead, once.
  Result<runtime::ExecuteResult> Execute(const traces::Segment& seg, const std::vector<uint64_t>& fetch,
                                         const std::vector<uint64_t>& release) {
    if (!deferred_error_.empty()) {
      if (!release.empty()) rt_->Release(session_, release);
      return Status::InvalidArgument(TakeDeferredError());
    }
    auto res = rt_->Execute(session_, seg, strings_, fetch, release);
    if (!res.ok()) {
      if (!release.empty()) rt_->Release(session_, release);
      Log(LogLevel::kWarn, sock_.peer() + " segment " + std::to_string(seg.index) + " failed: " + res.status().message());
    }
    return res;
  }

  // Fills `r` and `payload` with what running `seg` gave. A template run's
  // or a cycle's reply may leave out tensor infos that the segment's own
  // metas give (ExecuteReply.as_recorded; implied for a cycle); `ran_ahead`:
  // it ran before the request came; `cycle_ahead`: a cycle's runs that did.
  // A template run's reply offers the next cycle when `offer`; a cycle's
  // says when there is none any more.
  void BuildReply(const traces::Segment& seg, const std::vector<uint64_t>& fetch, const runtime::ExecuteResult& result,
                  ReplyKind kind, bool ran_ahead, uint32_t cycle_ahead, bool answered_first, bool offer,
                  uint64_t execute_us, wire::ExecuteReply* r, std::string* payload) {
    bool as_recorded = kind != ReplyKind::kWhole;
    for (size_t i = 0; i < result.fetched.size() && as_recorded; ++i) {
      const traces::TensorMeta* meta = traces::DefinedMeta(seg, fetch[i]);
      as_recorded = meta && meta->dtype == result.fetched[i].dtype && meta->sizes == result.fetched[i].sizes;
    }
    if (kind != ReplyKind::kCycle) r->set_as_recorded(as_recorded);
    for (const auto& t : result.fetched) {
      if (!as_recorded) {
        auto* info = r->add_tensors();
        info->set_dtype(traces::DTypeName(t.dtype));
        for (int64_t s : t.sizes) info->add_sizes(s);
        info->set_nbytes(t.bytes.size());
      }
      *payload += t.bytes;
    }
    for (const auto& a : result.scalars) {
      auto* s = r->add_scalars();
      if (a.kind == traces::Arg::Kind::kBool) s->set_b(a.i != 0);
      else if (a.kind == traces::Arg::Kind::kInt) s->set_i(a.i);
      else if (a.kind == traces::Arg::Kind::kFloat) s->set_f(a.f);
    }
    r->set_execute_us(static_cast<uint32_t>(std::min<uint64_t>(execute_us, UINT32_MAX)));
    r->set_graph(result.graph);
    r->set_ran_ahead(ran_ahead);
    r->set_answered_first(answered_first);
    if (kind == ReplyKind::kTemplateRun && offer) r->set_cycle_runs(static_cast<uint32_t>(last_cycle_.size()));
    if (kind == ReplyKind::kCycle) {
      r->set_cycle_ahead(cycle_ahead);
      r->set_cycle_ended(!offer);
    }
  }

  // Replies with what running `seg` gave (BuildReply; the offer is
  // offered_). A reply that offers a cycle is followed by a push (Push).
  // A RunCycle whose answer was pushed gets no reply: the one built must
  // be the one pushed.
  Status ReplyResult(const traces::Segment& seg, const std::vector<uint64_t>& fetch,
                     const runtime::ExecuteResult& result, ReplyKind kind, bool ran_ahead, uint32_t cycle_ahead = 0,
                     bool answered_first = false) {
    wire::Envelope reply;
    std::string payload;
    // The time of a segment answered before it ran goes with the next answer.
    BuildReply(seg, fetch, result, kind, ran_ahead, cycle_ahead, answered_first, offered_,
               result.execute_us + carried_us_, reply.mutable_execute_reply(), &payload);
    carried_us_ = 0;
    push_due_ = kind != ReplyKind::kWhole && offered_;
    if (LogEnabled(LogLevel::kInfo)) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), " execute segment %llu: %zu ops in %.3f ms%s, %zu bytes back",
                    static_cast<unsigned long long>(seg.index), seg.num_ops(), result.execute_us / 1e3,
                    ran_ahead               ? " (ran ahead)"
                    : answered_            ? " (answered ahead)"
                    : answered_first       ? " (answered first; they run next)"
                                           : "",
                    payload.size());
      Log(LogLevel::kInfo, sock_.peer() + buf);
    }
    if (answered_) {
      if (kind != ReplyKind::kCycle || reply.execute_reply().SerializeAsString() != answered_->answer ||
          payload != answered_->payload)
        return Status::Internal("a cycle ran other than the answer pushed for it");
      return Status::OK();
    }
    return Reply(reply, payload.data(), payload.size());
  }

  // Sends the CyclePush (genie.proto) that follows a reply offering a cycle:
  // the answer a RunCycle would get, when the cycle ran ahead whole (each
  // of its templates once; a template twice in one cycle is predicted anew
  // by its first run) and the answer is small.
  Status Push() {
    push_due_ = false;
    wire::Envelope env;
    auto* push = env.mutable_cycle_push();
    std::string payload;
    bool whole = offered_ && deferred_error_.empty() && !ahead_.empty() && ahead_.size() == last_cycle_.size();
    std::unordered_set<uint32_t> ids;
    for (size_t i = 0; whole && i < ahead_.size(); ++i)
      whole = ahead_[i].id == last_cycle_[i].id && ids.insert(ahead_[i].id).second &&
              ahead_[i].fetch.empty() == (i + 1 < ahead_.size());
    if (whole) {
      const Ahead& last = ahead_.back();
      uint64_t execute_us = 0;
      for (const Ahead& a : ahead_) execute_us += a.result.execute_us;
      execute_us = std::min<uint64_t>(execute_us, UINT32_MAX) + carried_us_;
      // The offer after it, as EndCycle will make it: the cycle repeated, and its templates define values only.
      bool offer = Feeds(last.result, last_cycle_);
      BuildReply(templates_.at(last.id)->seg, last.fetch, last.result, ReplyKind::kCycle, false,
                 static_cast<uint32_t>(ahead_.size()), false, offer, execute_us, push->mutable_answer(), &payload);
      if (payload.size() <= kMaxPushBytes) {
        pushed_ = {true, push->answer().SerializeAsString(), payload};
      } else {
        push->clear_answer();
        payload.clear();
      }
    }
    return Reply(env, payload.data(), payload.size());
  }

  transport::Socket sock_;
  int fd_;
  runtime::Runtime* rt_;
  const ServeOptions& opts_;
  uint64_t session_ = 0;
  traces::StringTable strings_;
  std::unordered_map<uint32_t, std::unique_ptr<Template>> templates_;
  // Run-ahead (see Seen).
  std::vector<Seen> cycle_;       // the template runs since the last run that fetched
  bool cycle_fed_ = true;         // every payload change in cycle_ carried exactly fetched_
  std::vector<Seen> last_cycle_;  // the cycle before, when it was fed
  std::string fetched_;           // the bytes the last run that fetched fetched
  ContentHash fetched_hash_;      // and their hash
  std::deque<Ahead> ahead_;       // runs made ahead, in the order their requests are expected
  std::deque<Ahead> deeper_;      // the cycle after those, run ahead too (RunDeeper)
  bool offered_ = false;          // the last reply offered last_cycle_ as one RunCycle
  bool push_due_ = false;         // and the push that follows it is not sent yet
  struct Pushed {
    bool ready = false;            // an answer was pushed:
    std::string answer, payload;   // its ExecuteReply, serialized, and its bytes
  };
  Pushed pushed_;                  // the answer pushed for the next RunCycle
  const Pushed* answered_ = nullptr;  // while the RunCycle it answered runs
  // Segments answered before they ran (AnswerFirst).
  std::string deferred_error_;  // the failure of one, for the next request that runs anything
  uint64_t carried_us_ = 0;     // their time, for the next reply's execute_us
};

}  // namespace

Status Serve(const ServeOptions& options, const std::function<void(const std::string& address)>& on_listening) {
  GENIE_ASSIGN_OR_RETURN(auto rt, runtime::Runtime::Create(options.device, options.max_memory, options.tf32_conv));
  GENIE_ASSIGN_OR_RETURN(auto listener, transport::Listener::Listen(options.listen));
  struct sigaction sa{};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  Log(LogLevel::kInfo, "serving on " + listener.address() + ", device " + rt->device() + ", torch " + rt->torch_version());
  on_listening(listener.address());

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

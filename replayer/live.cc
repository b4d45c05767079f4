#include "replayer/live.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/byte_io.h"
#include "recorder/frontend_protocol.h"
#include "recorder/launcher.h"
#include "replayer/heartbeat.h"
#include "replayer/segment_templates.h"
#include "runtime/protocol/frame.h"
#include "traces/segment_codec.h"
#include "traces/trace_writer.h"

namespace genie::replayer {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDrainGrace = std::chrono::seconds(10);
// A changed payload up to this size travels inside its template run, not as a blob upload first.
constexpr size_t kInlinePayloadBytes = 4096;
// Transient payloads from this size go up as they arrive (LiveConnection::SendAhead).
constexpr size_t kAheadBytes = 1u << 20;
// Parts sent ahead before their replies are read (the runtime blocks on a full socket otherwise).
constexpr size_t kMaxPartsAhead = 64;

Status WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return Status::IOError(std::string("the program's connection: ") + std::strerror(errno));
    p += k;
    n -= static_cast<size_t>(k);
  }
  return Status::OK();
}

// One frontend connection: decodes its frames, runs each segment on its own
// runtime session and answers it.
class LiveConnection final : public recorder::FrontendSink {
 public:
  LiveConnection(int fd, uint32_t stream, const LiveOptions& options, LiveReport* report)
      : fd_(fd), stream_(stream, this), options_(options), report_(report) {}

  int fd() const { return fd_; }
  recorder::FrameBuffer& frames() { return frames_; }
  recorder::FrontendStream& stream() { return stream_; }
  void Close() {
    if (fd_ >= 0 && stream_.ended()) Ended();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    monitor_.reset();
    SaveCounters();
    client_.reset();
    if (trace_) {
      traces::TraceFooter footer;
      footer.segments = trace_->stats().segments;
      footer.ops = trace_->stats().ops;
      Status st = trace_->Finish(footer);
      if (!st.ok() && report_->trace_error.empty()) report_->trace_error = st.message();
      trace_.reset();
    }
  }

  traces::StringTable& strings() override { return strings_; }

  Status AddPayload(const ContentHash& h, std::string bytes, bool single_use) override {
    if (journaling() || !on_runtime_.count(h)) {
      auto [it, fresh] = payloads_.try_emplace(h);
      if (fresh) {
        journal_bytes_ += bytes.size();
        it->second.bytes = std::move(bytes);
      }
      // Bytes the program may name again are kept until the runtime holds them as a blob.
      it->second.single_use = it->second.single_use && single_use;
    }
    return Status::OK();
  }

  // Transient payloads: the program's large single-use inputs (a batch of
  // images) go up under a name of the stream's, neither hashed here nor
  // checked by the runtime, which frees them once their input is bound.
  // Hashing 4.8 MB costs more than sending it (SHA-256 runs at about 2 GB/s
  // on one core), and no later segment names them. Up to
  // kInlinePayloadBytes they keep their content hash: they travel inside
  // template runs, where a decode step's token is recognized by its hash.
  bool TakesTransient(uint64_t bytes) const override { return bytes > kInlinePayloadBytes; }
  Status AddTransient(const ContentHash& name, std::string bytes) override {
    journal_bytes_ += bytes.size();
    auto& payload = payloads_[name];
    payload.bytes = std::move(bytes);
    if (payload.bytes.size() >= kAheadBytes && SendAhead(name, payload.bytes)) DropPayload(name);
    return Status::OK();
  }
  // A RING_PAYLOAD's bytes, in the frontend's ring until the last piece's
  // call returns: a large one goes to the runtime straight from there, each
  // piece as it comes (the program copies the next meanwhile), not copied
  // here first. One that cannot go ahead is copied at its last piece.
  Status AddTransientView(const ContentHash& name, std::string_view bytes, uint64_t ready) override {
    if (!streaming_ || streaming_->name != name) {  // its first piece
      ++report_->ring_payloads;
      const bool sending = bytes.size() >= kAheadBytes && CanSendAhead() && client_->BeginBlob(name, bytes.size()).ok();
      streaming_ = Streaming{name, 0, sending};
    }
    if (streaming_->sending && !client_->SendBytes(bytes.substr(streaming_->sent, ready - streaming_->sent)).ok())
      streaming_->sending = false;  // the connection is gone: the segment that names it meets that
    streaming_->sent = ready;
    if (ready < bytes.size()) return Status::OK();
    const bool sent = std::exchange(streaming_, std::nullopt)->sending;
    if (!sent) return AddTransient(name, std::string(bytes));
    SentAhead(name, bytes.size());
    return Status::OK();
  }

  // A large transient payload goes up as soon as it has arrived, ahead of
  // the segment that names it: its transfer to the runtime, and there to
  // the device, overlaps the program's capture of the ops that read it (a
  // batch of images moved, then the model's forward). Its reply is read
  // with the next request's. Not while a cycle is offered or held (its
  // answer is read before any other), nor while a journal keeps payloads
  // for a replay elsewhere; a send that fails (false) leaves it to its
  // segment, whose request then meets the connection's failure.
  bool SendAhead(const ContentHash& name, std::string_view bytes) {
    if (!CanSendAhead() || !client_->SendCycle().ok() || !client_->SendBlob(name, bytes).ok()) return false;
    SentAhead(name, bytes.size());
    return true;
  }
  bool CanSendAhead() const {
    return client_ && !journaling() && held_.empty() && offered_.empty() && part_error_.empty();
  }
  // Its reply comes with the next request's; the segment that names it sends nothing.
  void SentAhead(const ContentHash& name, uint64_t bytes) {
    ++early_replies_;
    sent_ahead_.insert(name);
    ++report_->uploaded_ahead;
    ++report_->uploaded_blobs;
    report_->uploaded_bytes += bytes;
  }

  Status AddWrite(traces::StringId op, uint32_t position, traces::StringId name) override {
    writes_[op].push_back({position, name});
    return Status::OK();
  }

  Status AddSegment(const traces::Segment& seg, const std::vector<traces::ValueId>& released, bool part) override {
    Received(seg);
    if (part) {
      // Sent ahead: nothing to answer now; the segment that closes it reports a failure.
      ++report_->parts;
      ++parts_read_;
      if (failure_.empty() && part_error_.empty()) {
        asking_ = AskEarly(seg);
        RunAsPart(seg, released);
        asking_ = 0;
      }
      Trace(seg);
      return Status::OK();
    }
    ++report_->segments;
    report_->materialized += seg.materialized.size();
    Status replied;
    auto start = Clock::now();
    if (!failure_.empty()) {
      replied = Reply(recorder::EncodeErrorReply(failure_));
    } else if (std::optional<std::string> frame = AnswerEarly(seg)) {
      // The answer is out; the segment runs after it, as a part would.
      replied = Reply(*frame);
      report_->segment_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      RunAnswered(seg, released);
    } else {
      recorder::SchedHelper(false);
      recorder::HelperBesideRuntime(false);
      auto reply = Run(seg, released, false);
      if (!part_error_.empty()) {
        // A part's failure came first in the program: it is the one the program hears of.
        replied = Reply(recorder::EncodeErrorReply(part_error_));
        part_error_.clear();
      } else if (!reply.ok()) {
        replied = Reply(recorder::EncodeErrorReply(Failed(reply.status())));
      } else {
        report_->released += released.size();
        replied = Reply(reply.value());
      }
    }
    Fetched(seg);
    // After the answer too: the RunCycle of an answer the runtime pushed
    // ahead. One not sent stays due: it fails the next message alike.
    if (client_) (void)client_->SendCycle();
    Trace(seg);  // after the answer: the program is not kept waiting for it
    return replied;
  }

  // An ANSWERED frame's segment: the frontend answered its value from the
  // EARLY frame pushed for it (see MaybePush). The frontend checked the
  // records it sent since; this checks them again, by the ops' written
  // arguments: a frontend that took a value they may have changed is
  // refused, and the program's connection closed.
  Status AddAnswered(const traces::Segment& seg, const std::vector<traces::ValueId>& released) override {
    Received(seg);
    ++report_->segments;
    report_->materialized += seg.materialized.size();
    if (!early_ || !early_->pushed || early_->spoiled || seg.materialized[0].id != early_->id || !Answerable(seg))
      return Status::Corruption("the frontend answered value " + std::to_string(seg.materialized[0].id) +
                                " itself, but no early answer for it was sent or it may have been written since");
    ++report_->answered_pushed;
    RunAnswered(seg, released);
    Fetched(seg);
    Trace(seg);
    return Status::OK();
  }

  // The runtime's socket, while the reply of the part that fetches a
  // value early is awaited to push it (MaybePush); -1 otherwise.
  int runtime_fd() const {
    return client_ && early_ && !early_->value && !early_->pushed && !ahead_.empty() && Pushable() ? client_->fd() : -1;
  }

  // The runtime's socket is readable (runtime_fd): reads the oldest part's
  // reply, then pushes the early value if it came; again while the
  // socket's read-ahead holds more (a poll does not see those bytes).
  void RuntimeReadable() {
    while (runtime_fd() >= 0) {
      if (!ReadAhead().ok()) return;  // the next segment fails over or fails
      MaybePush();
      if (!client_ || !client_->buffered()) return;
    }
  }

  // Whether the reply awaited for the early value may be read ahead already.
  bool RuntimeBuffered() const { return runtime_fd() >= 0 && client_->buffered(); }

  // Sends `seg`, whose answer went out early, ahead as a part.
  void RunAnswered(const traces::Segment& seg, const std::vector<traces::ValueId>& released) {
    ++report_->answered_early;
    recorder::SchedHelper(true);  // until an answer is not early
    recorder::HelperBesideRuntime(true);  // likewise (on a machine of few CPUs)
    report_->runtime_ms.push_back(parts_runtime_us_ / 1e3);
    parts_runtime_us_ = 0;
    in_order_ = true;  // its failure comes in its own reply, not with the next request's
    RunAsPart(seg, released);
    in_order_ = false;
    unsynced_ = false;
  }

  // Sends `seg` ahead, unanswered: a failure is the next segment's answer.
  void RunAsPart(const traces::Segment& seg, const std::vector<traces::ValueId>& released) {
    auto done = Run(seg, released, true);
    if (!done.ok()) part_error_ = Failed(done.status());
    else report_->released += released.size();
  }

  // The program ended cleanly. What it sent after its last answer (parts,
  // a segment answered early) may still be running: their replies are
  // read, and when the runtime answered the last segment before it ran,
  // an empty segment asks for that segment's failure. A failure there is
  // the session's late_error: the program was not told.
  void Ended() {
    if (!client_ || !failure_.empty()) return;
    Status st = DrainParts();
    if (st.ok() && part_error_.empty() && unsynced_) {
      ByteWriter w;
      if (traces::EncodeSegment(traces::Segment{}, &w).ok()) {
        wire::Envelope env = WholeSegment(w.buffer(), {}, {});
        auto r = Send(env, {});
        if (!r.ok() && r.status().code() != Status::Code::kIOError) part_error_ = "genie: " + r.status().message();
      }
    }
    if (part_error_.empty()) return;
    report_->late_error = part_error_;
    if (report_->error == part_error_) report_->error.clear();
  }

 private:
  struct JournalEntry {
    std::string record;
    std::vector<uint64_t> release;
    std::vector<ContentHash> payloads;  // the inputs it names
    bool failed = false;  // the runtime refused it (it fails the same way when replayed)
  };

  bool journaling() const { return options_.endpoints.size() > 1 && !journal_off_; }

  // At the program's first segment: the stored plan that covers it gives the
  // runtime; without one, the segments are written down to plan from later.
  Status FindPlan(const traces::Segment& seg) {
    if (!options_.find_plan) return Status::OK();
    // The frontend's segments carry no fingerprint; the trace's encoding gives it.
    GENIE_ASSIGN_OR_RETURN(uint64_t fingerprint, traces::Fingerprint(seg));
    GENIE_ASSIGN_OR_RETURN(planned_, options_.find_plan(fingerprint));
    if (planned_ || options_.trace_path.empty() || !report_->trace_path.empty()) return Status::OK();
    auto writer = traces::TraceWriter::Create(options_.trace_path, options_.trace_header);
    if (!writer.ok()) {
      report_->trace_error = writer.status().message();
      return Status::OK();
    }
    trace_ = std::move(writer).value();
    report_->trace_path = options_.trace_path;
    return Status::OK();
  }

  // Writes `seg` to the planning trace: its payloads by hash only (their
  // bytes are not kept), so its fingerprint is the one the plan is found by.
  void Trace(const traces::Segment& seg) {
    if (!trace_) return;
    for (size_t i = trace_->strings().size(); i < strings_.size(); ++i) trace_->strings().Intern(strings_.Get(i));
    Status st = trace_->AddSegment(seg);
    if (!st.ok()) {
      report_->trace_error = st.message();
      report_->trace_path.clear();
      trace_.reset();
    }
  }

  // The message for the program; a lost runtime took this session's values
  // with it, so every later segment fails too.
  std::string Failed(const Status& st) {
    std::string message = "genie: " + st.message();
    if (st.code() == Status::Code::kIOError) failure_ = message;
    if (report_->error.empty()) report_->error = message;
    return message;
  }

  // Early answers. A training step's loss is computed in the step's first
  // part (its forward, which goes ahead when backward() begins) and asked
  // for at the step's end, after the backward and the optimizer step.
  // Answered once the runtime reads that last segment, the program waits
  // for everything before it. So when the program's last materialization
  // fetched one value, the part of the next step that defines a value of
  // the same dtype and sizes at the same distance past the step's first
  // value asks for it too (Execute.fetch_early). A materialization of
  // exactly that value is then answered from that part's reply, and its
  // segment goes to the runtime as a part, unless something sent since may
  // have written the value's storage (an argument that an op's schema marks
  // written, frontend_protocol.h WRITES) or a part failed first. A failure
  // of what runs after the answer is the answer to the next segment, as a
  // part's is (Ended: or the session's error). Not while the runtime offers
  // a cycle, nor while a journal keeps a backup's replay (it needs each
  // failure with its own segment).
  struct Early {
    uint64_t id = 0;                       // the value asked for, which owns its storage
    std::unordered_set<uint64_t> aliases;  // it and the values defined on its storage since
    bool spoiled = false;                  // an op sent since may have written it
    std::optional<FetchedTensor> value;    // from its part's reply, once read
    bool pushed = false;                   // sent to the frontend in an EARLY frame
  };

  // What every segment and part notes first.
  void Received(const traces::Segment& seg) {
    report_->ops += seg.num_ops();
    if (step_first_ == 0) step_first_ = traces::FirstDefined(seg);
    if (early_) Watch(seg, 0, true);
  }

  // Whether an early answer can be given now, but for its value.
  bool Pushable() const {
    return part_error_.empty() && failure_.empty() && offered_.empty() && held_.empty() && !journaling() && client_;
  }

  // Whether materialization `seg` holds no results but tensors and Nones
  // (other scalars come with a REPLY).
  static bool Answerable(const traces::Segment& seg) {
    for (const auto& step : seg.steps)
      if (step.kind == traces::Step::Kind::kOp)
        for (const auto& out : step.op.outputs)
          if (!out.is_tensor && out.scalar.kind != traces::Arg::Kind::kNone) return false;
    return true;
  }

  // Sends the value fetched early to the frontend in an EARLY frame as
  // soon as its part's reply is in, unless an op seen since may have
  // written it: the program's materialization of it then waits for nothing.
  void MaybePush() {
    if (!early_ || !early_->value || early_->pushed || early_->spoiled || !Pushable() || fd_ < 0) return;
    auto reply = ReplyFrame({*early_->value}, nullptr, true);
    if (!reply.ok()) return;
    std::string frame(5, '\0');
    auto u64 = [&](uint64_t v) { frame.append(reinterpret_cast<const char*>(&v), 8); };
    u64(early_->id);
    u64(parts_read_);
    frame.append(reply->data() + 5, reply->size() - 5);
    if (frame.size() - 5 > recorder::kMaxFrameBody) return;
    uint32_t len = static_cast<uint32_t>(frame.size() - 5);
    std::memcpy(frame.data(), &len, 4);
    frame[4] = static_cast<char>(recorder::FrameType::kEarly);
    if (Reply(frame).ok()) early_->pushed = true;
  }

  // The value id `seg` (a part) asks for early, or 0.
  uint64_t AskEarly(const traces::Segment& seg) {
    if (!options_.early_answers || !wanted_ || early_ || step_first_ == 0 || journaling() || !offered_.empty() ||
        !held_.empty())
      return 0;
    const uint64_t id = step_first_ + wanted_->offset;
    for (size_t i = 0; i < seg.steps.size(); ++i) {
      const auto& step = seg.steps[i];
      if (step.kind != traces::Step::Kind::kOp) continue;
      for (const auto& out : step.op.outputs) {
        if (!out.is_tensor || out.id != id) continue;
        if (out.meta.storage != id || out.meta.dtype != wanted_->dtype || out.meta.sizes != wanted_->sizes) return 0;
        early_ = Early{id, {id}, false, std::nullopt};
        Watch(seg, i + 1, false);  // ops after it in its own part run before it is fetched
        return id;
      }
    }
    return 0;
  }

  // Follows `seg`'s steps from `from` for the early value: the values
  // defined on its storage, and (`writes`) whether an op may write one.
  void Watch(const traces::Segment& seg, size_t from, bool writes) {
    Early& e = *early_;
    for (size_t i = from; i < seg.steps.size() && !e.spoiled; ++i) {
      const auto& step = seg.steps[i];
      if (step.kind != traces::Step::Kind::kOp) continue;
      const traces::Op& op = step.op;
      if (writes) {
        auto w = writes_.find(op.schema);
        if (w != writes_.end()) {
          for (const auto& [position, name] : w->second) {
            if (position < op.args.size() && Reaches(op.args[position])) e.spoiled = true;
            for (const auto& [kw, arg] : op.kwargs)
              if (kw == name && Reaches(arg)) e.spoiled = true;
          }
        }
      }
      for (const auto& out : op.outputs)
        if (out.is_tensor && e.aliases.count(out.meta.storage)) e.aliases.insert(out.id);
    }
  }

  // Whether `a` is, or lists, a value on the early value's storage.
  bool Reaches(const traces::Arg& a) const {
    if (a.kind == traces::Arg::Kind::kTensor) return early_->aliases.count(a.tensor) > 0;
    if (a.kind != traces::Arg::Kind::kList) return false;
    for (const auto& item : a.list)
      if (Reaches(item)) return true;
    return false;
  }

  // The REPLY frame for materialization `seg` from the value fetched
  // early, when it can be answered so (see Early); nullopt otherwise.
  std::optional<std::string> AnswerEarly(const traces::Segment& seg) {
    if (!early_ || early_->spoiled || seg.materialized.size() != 1 || seg.materialized[0].id != early_->id ||
        !Pushable())
      return std::nullopt;
    if (!Answerable(seg)) return std::nullopt;
    // The replies up to the part that asked (a lost connection: the segment
    // goes as usual, and fails over or fails there).
    if (!DrainParts(early_->id).ok() || !part_error_.empty() || !early_->value) return std::nullopt;
    auto frame = ReplyFrame({*early_->value}, nullptr, true);
    if (!frame.ok()) return std::nullopt;
    return std::move(frame).value();
  }

  // After materialization `seg`: what the next step is expected to fetch.
  void Fetched(const traces::Segment& seg) {
    wanted_.reset();
    early_.reset();
    if (answered_ && seg.materialized.size() == 1 && step_first_ != 0 && seg.materialized[0].id >= step_first_)
      wanted_ = Wanted{seg.materialized[0].id - step_first_, answered_->first, answered_->second};
    answered_.reset();
    step_first_ = 0;
  }

  // Reads the replies of the parts sent ahead, oldest first, all of them
  // or (`through`) up to the one that asked for that value early. A part
  // that failed is kept in part_error_ for the segment that closes it; only
  // a lost connection is returned.
  Status DrainParts(uint64_t through = 0) {
    while (!ahead_.empty()) {
      const uint64_t early = ahead_.front().early;
      GENIE_RETURN_IF_ERROR(ReadAhead());
      if (through != 0 && early == through) break;
    }
    return Status::OK();
  }

  // Reads the reply of the oldest part sent ahead (see DrainParts).
  Status ReadAhead() {
    Ahead a = ahead_.front();
    ahead_.pop_front();
    auto r = client_->ReadExecute(a.blobs, a.from_template, {}, false);
    if (r.ok()) {
      parts_runtime_us_ += r->message.execute_us();
      if (r->message.graph()) ++report_->graph_segments;
      if (r->message.ran_ahead()) ++report_->ran_ahead;
      if (a.early != 0 && early_ && early_->id == a.early && r->tensors.size() == 1)
        early_->value = std::move(r->tensors[0]);
    } else if (r.status().code() == Status::Code::kIOError) {
      ahead_.clear();
      return r.status();
    } else {
      templates_.Clear();
      ForgetCycles();
      if (part_error_.empty()) part_error_ = Failed(r.status());
    }
    return Status::OK();
  }

  Status Connect() {
    const LiveEndpoint& e = endpoint_ == 0 && planned_ ? *planned_ : options_.endpoints[endpoint_];
    monitor_.reset();
    client_.reset();
    on_runtime_.clear();
    sent_ahead_.clear();
    early_replies_ = 0;
    templates_.Clear();
    ahead_.clear();
    ForgetCycles();
    GENIE_ASSIGN_OR_RETURN(RuntimeClient c, RuntimeClient::Connect(e.address, e.token));
    client_ = std::make_unique<RuntimeClient>(std::move(c));
    report_->device = client_->hello().device();
    report_->torch_version = client_->hello().torch_version();
    report_->pool = e.pool;
    report_->address = e.address;
    if (options_.heartbeat_timeout > 0) {
      auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.heartbeat_timeout * 1000));
      GENIE_ASSIGN_OR_RETURN(monitor_, HeartbeatMonitor::Start(e.address, e.token, client_->fd(), timeout));
    }
    return Status::OK();
  }

  // Why the current runtime failed: the monitor's reason when it declared it dead.
  Status Lost(const Status& st) {
    if (monitor_ && monitor_->dead()) return Status::IOError(monitor_->reason());
    return st;
  }

  void SaveCounters() {
    if (!client_) return;
    const ClientCounters& c = client_->counters();
    report_->counters.round_trips += c.round_trips;
    report_->counters.bytes_up += c.bytes_up;
    report_->counters.bytes_down += c.bytes_down;
  }

  static wire::Envelope WholeSegment(const std::string& record, const std::vector<uint64_t>& fetch,
                                     const std::vector<uint64_t>& release) {
    wire::Envelope env;
    auto* ex = env.mutable_execute();
    ex->set_segment(record);
    for (uint64_t f : fetch) ex->add_fetch(f);
    for (uint64_t r : release) ex->add_release(r);
    return env;
  }

  // Sends `seg` as its template's run when the session holds one with its
  // skeleton, else whole (encoding `record` if it is still empty) as a new
  // template. Small payloads that changed go inside a template run: the
  // runtime holds those for the template's slot until a later run changes
  // it, and keeps none in its blob cache, so genie counts them as on the
  // runtime only for the slots its runs leave unchanged (a template run
  // sends nothing for those).
  Result<ExecuteReply> SendSegment(const traces::Segment& seg, std::string* record,
                                   const std::vector<ContentHash>& payloads, const std::vector<uint64_t>& fetch,
                                   const std::vector<uint64_t>& release, bool ahead) {
    TemplateTable::Plan plan = templates_.Next(seg, release);
    wire::Envelope env;
    std::vector<const traces::TensorMeta*> recorded;
    std::vector<ContentHash> inlined;
    std::vector<ContentHash> changed;  // a template run's: the payloads it may need to upload
    if (plan.from_template) {
      auto* ex = env.mutable_execute();
      ex->set_from_template(plan.from_template);
      ex->set_slot_diffs(std::move(plan.slot_diffs));
      ex->set_release_diffs(std::move(plan.release_diffs));
      for (const auto& [index, h] : plan.changed) {
        auto* change = ex->add_payloads();
        change->set_index(index);
        changed.push_back(h);
        auto it = payloads_.find(h);
        if (!on_runtime_.count(h) && it != payloads_.end() && !it->second.bytes.empty() &&
            it->second.bytes.size() <= kInlinePayloadBytes) {
          change->set_data(it->second.bytes);
          inlined.push_back(h);
        } else {
          change->set_hash(reinterpret_cast<const char*>(h.bytes.data()), h.bytes.size());
        }
      }
      for (const auto& m : seg.materialized) recorded.push_back(traces::DefinedMeta(seg, m.id));
      ++report_->template_runs;
      CycleRun run{plan.from_template, {}};
      for (const auto& change : plan.changed) run.fed.push_back(change.first);
      if (InCycle(env.execute(), plan, run, ahead, !fetch.empty())) {
        since_fetch_.push_back(std::move(run));
        held_.push_back(std::move(env));
        held_inlined_.insert(held_inlined_.end(), inlined.begin(), inlined.end());
        if (held_.size() < offered_.size()) return ExecuteReply{};
        return SendCycle(recorded);
      }
      since_fetch_.push_back(std::move(run));
    } else {
      since_fetch_.clear();  // the runtime forgets its cycles at a whole segment (Send sends any held first)
      if (record->empty()) {
        ByteWriter w;
        GENIE_RETURN_IF_ERROR(traces::EncodeSegment(seg, &w));
        *record = std::move(w.buffer());
      }
      env = WholeSegment(*record, fetch, release);
      env.mutable_execute()->set_as_template(plan.as_template);
    }
    // A journal records which segment failed: its runtime answers none first.
    if (journaling() || in_order_) env.mutable_execute()->set_in_order(true);
    if (asking_ != 0) env.mutable_execute()->add_fetch_early(asking_);
    auto reply = Send(env, plan.from_template ? changed : payloads, inlined, recorded, ahead);
    if (!reply.ok()) {
      templates_.Clear();
      ForgetCycles();
      return reply;
    }
    for (const auto& h : inlined) SentInline(h);
    if (!ahead && !fetch.empty()) {
      // A fetch closes the runtime's cycle: it may offer the next.
      offered_.clear();
      if (plan.from_template && reply->message.cycle_runs() == since_fetch_.size() && !journaling())
        offered_ = std::move(since_fetch_);
      since_fetch_.clear();
      Fetched(*reply);
    }
    return reply;
  }

  // Cycles (genie.proto RunCycle). The runtime offers the next cycle
  // when the template runs since the last fetch repeated those before them,
  // fed by their fetch. Each run of the program's next step that is, in
  // order, exactly what the offer predicts (the template, no slot or
  // release off its prediction, the payloads that changed then changed to
  // the bytes fetched last, and no others) is held back, parts included:
  // the runtime has run it ahead already. The last one sends the whole step
  // as one RunCycle of a few bytes. A run that differs sends the runs
  // held as they are, then itself, and ends the offer.
  struct CycleRun {
    uint32_t id = 0;
    std::vector<uint32_t> fed;  // its payloads that changed, in the offered cycle to the bytes fetched before
  };

  // Whether the template run `ex` (planned as `plan`) is the next run of
  // the offered cycle. `ex` holds its slot and release differences.
  bool InCycle(const wire::Execute& ex, const TemplateTable::Plan& plan, const CycleRun& run, bool ahead,
               bool fetches) const {
    if (held_.size() >= offered_.size() || journaling() || early_replies_ != 0) return false;
    const CycleRun& want = offered_[held_.size()];
    bool last = held_.size() + 1 == offered_.size();
    if (run.id != want.id || !ex.slot_diffs().empty() || !ex.release_diffs().empty() || fetches != last ||
        ahead == last || strings_sent_ != strings_.size())
      return false;
    if (!want.fed.empty() && !fed_ready_) return false;
    for (const auto& [index, h] : plan.changed)
      if (h != fetched_hash_ || std::find(want.fed.begin(), want.fed.end(), index) == want.fed.end()) return false;
    const std::vector<ContentHash>& hashes = templates_.Hashes(run.id);
    for (uint32_t index : want.fed)
      if (index >= hashes.size() || hashes[index] != fetched_hash_) return false;
    // Its other payloads are those of slots it leaves unchanged, which the runtime's template holds.
    return true;
  }

  // Sends the held runs of the offered cycle as one RunCycle and reads its
  // reply: the answer the runtime pushed when it ran the cycle ahead
  // (genie.proto CyclePush; the RunCycle then goes after the program's
  // answer, in AddSegment).
  Result<ExecuteReply> SendCycle(const std::vector<const traces::TensorMeta*>& recorded) {
    std::vector<ContentHash> inlined = std::move(held_inlined_);
    held_.clear();
    held_inlined_.clear();
    Result<ExecuteReply> reply = Status::Internal("no reply");
    Status drained = DrainParts();
    auto pushed = drained.ok() ? client_->TakePush(recorded) : Result<std::optional<ExecuteReply>>(drained);
    if (pushed.ok() && pushed->has_value()) {
      reply = std::move(**pushed);
      ++report_->pushed;
    } else if (!pushed.ok()) {
      reply = pushed.status();
    } else {
      wire::Envelope env;
      env.mutable_run_cycle();
      Status sent = client_->SendExecute(env, {});
      reply = sent.ok() ? client_->ReadExecute(0, true, recorded, true, true) : Result<ExecuteReply>(sent);
    }
    if (!reply.ok()) {
      templates_.Clear();
      ForgetCycles();
      return reply;
    }
    for (const auto& h : inlined) SentInline(h);
    ++report_->cycles;
    report_->ran_ahead += reply->message.cycle_ahead();
    since_fetch_.clear();
    if (reply->message.cycle_ended()) offered_.clear();
    Fetched(*reply);
    return reply;
  }

  // Sends the runs held for a cycle that did not come as offered, as they are.
  Status SendHeld() {
    std::vector<wire::Envelope> held = std::move(held_);
    std::vector<ContentHash> inlined = std::move(held_inlined_);
    held_.clear();
    held_inlined_.clear();
    offered_.clear();
    for (auto& env : held) {
      GENIE_RETURN_IF_ERROR(client_->SendExecute(env, {}));
      ahead_.push_back({std::exchange(early_replies_, 0), true});
      if (ahead_.size() >= kMaxPartsAhead) GENIE_RETURN_IF_ERROR(DrainParts());
    }
    for (const auto& h : inlined) SentInline(h);
    return Status::OK();
  }

  // The bytes a fetch gave can feed the next cycle when they are few (the runtime keeps no more).
  // A large fetch is neither copied nor hashed.
  void Fetched(const ExecuteReply& reply) {
    size_t n = 0;
    for (const auto& t : reply.tensors) n += t.bytes.size();
    fed_ready_ = n > 0 && n <= wire::kMaxFedBytes;
    if (!fed_ready_) return;
    std::string bytes;
    for (const auto& t : reply.tensors) bytes += t.bytes;
    fetched_hash_ = ContentHash::Of(bytes.data(), bytes.size());
  }

  void ForgetCycles() {
    since_fetch_.clear();
    offered_.clear();
    held_.clear();
    held_inlined_.clear();
    fed_ready_ = false;
  }

  // Sends one Execute with the payloads it needs that the runtime lacks
  // (asking first when they are large), except those `inlined` in it. The
  // parts sent ahead are answered before it; `ahead`: it is such a part
  // itself, whose reply is left to read later (an empty reply is returned).
  Result<ExecuteReply> Send(wire::Envelope& env, const std::vector<ContentHash>& payloads,
                            const std::vector<ContentHash>& inlined = {},
                            const std::vector<const traces::TensorMeta*>& recorded = {}, bool ahead = false) {
    // Any other message ends the runtime's offer of a cycle.
    if (!held_.empty()) GENIE_RETURN_IF_ERROR(SendHeld());
    offered_.clear();
    std::vector<ContentHash> needed;
    uint64_t needed_bytes = 0;
    for (const auto& h : payloads) {
      if (sent_ahead_.erase(h)) continue;  // went up as it arrived (SendAhead)
      if (on_runtime_.count(h) || std::find(needed.begin(), needed.end(), h) != needed.end() ||
          std::find(inlined.begin(), inlined.end(), h) != inlined.end())
        continue;
      auto it = payloads_.find(h);
      if (it == payloads_.end())
        return Status::Corruption(h.transient() ? "the program named a single-use payload twice"
                                                : "the program named a payload it never sent");
      needed.push_back(h);
      // A transient one is never on the runtime already: nothing to ask.
      if (!h.transient()) needed_bytes += it->second.bytes.size();
    }
    if (needed_bytes > options_.query_threshold) {
      GENIE_RETURN_IF_ERROR(DrainParts());  // the query's answer comes after theirs
      GENIE_RETURN_IF_ERROR(client_->ReadUploads(std::exchange(early_replies_, 0)));  // and those of uploads ahead
      std::vector<ContentHash> asked, missing;
      for (const auto& h : needed) (h.transient() ? missing : asked).push_back(h);
      GENIE_ASSIGN_OR_RETURN(std::vector<bool> present, client_->QueryBlobs(asked));
      for (size_t i = 0; i < asked.size(); ++i) {
        if (!present[i]) {
          missing.push_back(asked[i]);
          continue;
        }
        ++report_->already_present;
        Uploaded(asked[i]);
      }
      needed.swap(missing);
    }
    std::vector<std::pair<ContentHash, std::string_view>> blobs;
    for (const auto& h : needed) {
      const std::string& bytes = payloads_.at(h).bytes;
      blobs.emplace_back(h, bytes);
      ++report_->uploaded_blobs;
      report_->uploaded_bytes += bytes.size();
    }
    for (auto it = strings_.all().begin() + static_cast<std::ptrdiff_t>(strings_sent_); it != strings_.all().end(); ++it)
      env.mutable_execute()->add_new_strings(*it);
    bool from_template = env.execute().from_template() != 0;
    // Uploads sent ahead of this request (SendAhead) are answered before it.
    size_t uploads = blobs.size() + std::exchange(early_replies_, 0);
    GENIE_RETURN_IF_ERROR(client_->SendExecute(env, blobs));
    // Strings and blobs reached the runtime unless the connection breaks.
    strings_sent_ = strings_.size();
    for (const auto& h : needed) Uploaded(h);
    if (ahead) {
      ahead_.push_back({uploads, from_template, asking_});
      if (ahead_.size() >= kMaxPartsAhead) GENIE_RETURN_IF_ERROR(DrainParts());
      return ExecuteReply{};
    }
    GENIE_RETURN_IF_ERROR(DrainParts());
    return client_->ReadExecute(uploads, from_template, recorded, true);
  }

  void Uploaded(const ContentHash& h) {
    if (!h.transient()) on_runtime_.insert(h);  // a transient one is gone once its input is bound
    if (!journaling()) DropPayload(h);
  }
  // A payload sent inside a template run: held by the runtime for its slot
  // only, so not on the runtime for later segments. Its bytes go unless the
  // program may name it again (a constant) or a journal keeps them.
  void SentInline(const ContentHash& h) {
    auto it = payloads_.find(h);
    if (!journaling() && it != payloads_.end() && it->second.single_use) DropPayload(h);
  }
  void DropPayload(const ContentHash& h) {
    auto it = payloads_.find(h);
    if (it == payloads_.end()) return;
    journal_bytes_ -= std::min<uint64_t>(journal_bytes_, it->second.bytes.size());
    payloads_.erase(it);
  }

  // Moves the session to the next endpoint: connects and replays the journal there.
  Status Failover(const Status& why) {
    while (endpoint_ + 1 < options_.endpoints.size()) {
      if (journal_off_)
        return Status::IOError(why.message() + "; no failover to pool '" + options_.endpoints[endpoint_ + 1].pool +
                               "': the session outgrew the journal limit");
      SaveCounters();
      ++endpoint_;
      ++report_->failovers;
      const LiveEndpoint& e = options_.endpoints[endpoint_];
      if (options_.notice)
        options_.notice(why.message() + "; moving the program to backup pool '" + e.pool + "' (" + e.address +
                        ") and replaying its " + std::to_string(journal_.size()) + " segments there");
      strings_sent_ = 0;
      Status st = Connect();
      for (size_t i = 0; st.ok() && i < journal_.size(); ++i) {
        const JournalEntry& j = journal_[i];
        wire::Envelope env = WholeSegment(j.record, {}, j.release);
        auto r = Send(env, j.payloads);
        if (!r.ok() && (r.status().code() == Status::Code::kIOError || !j.failed)) st = Lost(r.status());
      }
      if (st.ok()) return Status::OK();
      if (st.code() != Status::Code::kIOError) return st;
      return Failover(st);
    }
    return why;
  }

  // Runs the segment; returns the REPLY frame for the program (nothing for
  // a part, which goes ahead unanswered unless a journal needs its reply).
  Result<std::string> Run(const traces::Segment& seg, const std::vector<traces::ValueId>& released, bool part) {
    std::vector<ContentHash> payloads;
    for (const auto& step : seg.steps)
      if (step.kind == traces::Step::Kind::kInput && step.input.payload) payloads.push_back(*step.input.payload);
    // Encoded only when it goes up whole or into the journal.
    std::string record;
    if (journaling()) {
      ByteWriter w;
      GENIE_RETURN_IF_ERROR(traces::EncodeSegment(seg, &w));
      record = std::move(w.buffer());
    }
    std::vector<uint64_t> fetch;
    for (const auto& m : seg.materialized) fetch.push_back(m.id);
    // In id order: the program drops values in an order of its own (a
    // template check drops them as its Python frees them), and the
    // runtime frees them after the segment all the same. Sorted, a step
    // releases what the step before released, moved along by the step.
    std::vector<uint64_t> release(released.begin(), released.end());
    std::sort(release.begin(), release.end());

    if (first_) {
      first_ = false;
      GENIE_RETURN_IF_ERROR(FindPlan(seg));
    }
    auto start = Clock::now();
    Result<ExecuteReply> reply = Status::Internal("not run");
    while (true) {
      Status ready = client_ ? Status::OK() : Connect();
      if (ready.ok()) {
        reply = SendSegment(seg, &record, payloads, fetch, release, part && !journaling());
        if (reply.ok() || reply.status().code() != Status::Code::kIOError) break;
        ready = Lost(reply.status());
      }
      if (ready.code() != Status::Code::kIOError) return ready;
      GENIE_RETURN_IF_ERROR(Failover(ready));
    }
    if (journaling()) {
      journal_bytes_ += record.size();
      if (journal_bytes_ > options_.journal_limit) {
        journal_off_ = true;
        journal_.clear();
        // Every payload here was named by a segment sent: those kept for the journal go, but
        // for the ones the program may name again that the runtime does not hold as blobs.
        for (auto it = payloads_.begin(); it != payloads_.end();)
          it = on_runtime_.count(it->first) || it->second.single_use ? payloads_.erase(it) : std::next(it);
      } else {
        journal_.push_back({record, release, payloads, !reply.ok()});
      }
    }
    if (!reply.ok()) return reply.status();
    if (part) {
      parts_runtime_us_ += reply->message.execute_us();
      if (reply->message.graph()) ++report_->graph_segments;
      if (reply->message.ran_ahead()) ++report_->ran_ahead;
      return std::string();
    }
    report_->segment_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    report_->runtime_ms.push_back((parts_runtime_us_ + reply->message.execute_us()) / 1e3);
    parts_runtime_us_ = 0;
    if (reply->message.graph()) ++report_->graph_segments;
    if (reply->message.ran_ahead()) ++report_->ran_ahead;
    if (reply->message.answered_first()) ++report_->answered_first;
    unsynced_ = reply->message.answered_first();
    return ReplyFrame(reply->tensors, &reply->message, false);
  }

  // The REPLY frame: u32 length | u8 type | u8 status | tensors | scalars
  // (`message`'s, when given). Status 2: the runtime offers to run the
  // program's next step ahead (a cycle), so parts sent ahead would gain the
  // program nothing; 3: `early`, answered from a value fetched early, so a
  // training step's backward need not go ahead (phases.py). Notes the
  // answer's one tensor for Fetched.
  Result<std::string> ReplyFrame(const std::vector<FetchedTensor>& tensors, const wire::ExecuteReply* message,
                                 bool early) {
    answered_.reset();
    std::string out(5, '\0');
    out.push_back(!offered_.empty() ? 2 : early ? 3 : 0);
    auto u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
    auto i64 = [&](int64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
    u32(static_cast<uint32_t>(tensors.size()));
    for (const auto& t : tensors) {
      GENIE_ASSIGN_OR_RETURN(traces::DType dtype, traces::DTypeFromName(t.dtype));
      out.push_back(static_cast<char>(dtype));
      out.push_back(static_cast<char>(t.sizes.size()));
      for (int64_t s : t.sizes) i64(s);
      i64(static_cast<int64_t>(t.bytes.size()));
      out += t.bytes;
      if (tensors.size() == 1) answered_ = std::make_pair(dtype, t.sizes);
    }
    u32(static_cast<uint32_t>(message ? message->scalars_size() : 0));
    for (int i = 0; message && i < message->scalars_size(); ++i) {
      const wire::Scalar& s = message->scalars(i);
      if (s.value_case() == wire::Scalar::kB) {
        out.push_back(1);
        i64(s.b());
      } else if (s.value_case() == wire::Scalar::kI) {
        out.push_back(2);
        i64(s.i());
      } else if (s.value_case() == wire::Scalar::kF) {
        out.push_back(3);
        double f = s.f();
        out.append(reinterpret_cast<const char*>(&f), 8);
      } else {
        out.push_back(0);
        i64(0);
      }
    }
    if (out.size() - 5 > recorder::kMaxFrameBody)
      return Status::InvalidArgument("a materialized value of " + std::to_string(out.size()) +
                                     " bytes exceeds the frame limit");
    uint32_t len = static_cast<uint32_t>(out.size() - 5);
    std::memcpy(out.data(), &len, 4);
    out[4] = static_cast<char>(recorder::FrameType::kReply);
    return out;
  }

  Status Reply(const std::string& frame) { return WriteAll(fd_, frame.data(), frame.size()); }

  int fd_;
  recorder::FrameBuffer frames_;
  recorder::FrontendStream stream_;
  const LiveOptions& options_;
  LiveReport* report_;
  traces::StringTable strings_;
  size_t strings_sent_ = 0;
  // Payload bytes not yet on the runtime as blobs (and those the program may
  // name again, sent inside template runs); with a backup, every payload
  // (for a replay there).
  struct Payload {
    std::string bytes;
    bool single_use = true;  // named by one INPUT record: the program sends them again for another
  };
  std::unordered_map<ContentHash, Payload, ContentHashHasher> payloads_;
  std::unordered_set<ContentHash, ContentHashHasher> on_runtime_;
  std::unordered_set<ContentHash, ContentHashHasher> sent_ahead_;  // transient payloads up before their segment
  // The RING_PAYLOAD whose pieces are arriving (AddTransientView): the bytes
  // seen so far, and whether they are going to the runtime as they come.
  struct Streaming {
    ContentHash name;
    uint64_t sent = 0;
    bool sending = false;
  };
  std::optional<Streaming> streaming_;
  size_t early_replies_ = 0;  // their replies, not read yet: they come before the next request's
  size_t endpoint_ = 0;
  std::vector<JournalEntry> journal_;
  uint64_t journal_bytes_ = 0;
  bool journal_off_ = false;
  std::unique_ptr<RuntimeClient> client_;
  TemplateTable templates_{wire::kMaxTemplates};
  struct Ahead {
    size_t blobs = 0;  // uploads sent with it, whose replies come first
    bool from_template = false;
    uint64_t early = 0;  // the value it fetches early (Execute.fetch_early), or 0
  };
  std::deque<Ahead> ahead_;       // parts sent whose replies are not read yet
  std::string part_error_;        // the first failure of a part, for the segment that closes it
  uint64_t parts_runtime_us_ = 0; // the runtime's time on the parts of the open segment
  std::unique_ptr<HeartbeatMonitor> monitor_;
  std::string failure_;
  bool first_ = true;                       // no segment seen yet
  std::optional<LiveEndpoint> planned_;     // the runtime of the plan followed
  std::unique_ptr<traces::TraceWriter> trace_;  // the planning trace, when no plan covered the program
  // Cycles (see CycleRun).
  std::vector<CycleRun> since_fetch_;  // the template runs sent since the last fetch
  std::vector<CycleRun> offered_;      // the cycle the runtime offered; empty: none
  std::vector<wire::Envelope> held_;   // the runs of it matched so far, not sent
  std::vector<ContentHash> held_inlined_;  // payloads inside them
  ContentHash fetched_hash_;           // of the bytes fetched last,
  bool fed_ready_ = false;             // when they can feed a cycle
  // Early answers (see Early).
  std::unordered_map<traces::StringId, std::vector<std::pair<uint32_t, traces::StringId>>> writes_;  // WRITES
  struct Wanted {
    uint64_t offset = 0;  // past the first value of its step
    traces::DType dtype = traces::DType::kFloat32;
    std::vector<int64_t> sizes;
  };
  std::optional<Wanted> wanted_;  // what the last materialization fetched
  uint64_t step_first_ = 0;       // the first value the open step defined; 0: none yet
  std::optional<Early> early_;    // the value asked for early in this step
  uint64_t parts_read_ = 0;       // PART frames read from the frontend (an EARLY frame's count)
  uint64_t asking_ = 0;           // the value the part being sent asks for
  bool unsynced_ = false;         // the runtime answered the last segment before it ran (see Ended)
  bool in_order_ = false;         // the segment being sent must not be answered before it runs
  std::optional<std::pair<traces::DType, std::vector<int64_t>>> answered_;  // the last answer's one tensor
};

}  // namespace

Result<LiveReport> RunLive(const LiveOptions& options) {
  recorder::ListenSocket listener;
  GENIE_RETURN_IF_ERROR(listener.Open());
  GENIE_ASSIGN_OR_RETURN(pid_t child, recorder::Spawn(options.argv, listener.path(), {{"GENIE_MODE", "remote"}},
                                                          options.program_cpus ? &*options.program_cpus : nullptr));
  recorder::ChildSignals signals(child);
  LiveReport report;
  std::vector<std::unique_ptr<LiveConnection>> conns;
  bool child_done = false;
  int wstatus = 0;
  Clock::time_point child_exit;
  uint32_t next_stream = 0;
  while (true) {
    for (auto& c : conns)
      if (c->RuntimeBuffered()) c->RuntimeReadable();
    std::vector<pollfd> fds;
    fds.push_back({listener.fd(), POLLIN, 0});
    for (auto& c : conns) fds.push_back({c->fd(), POLLIN, 0});
    // The runtimes whose reply brings a value to push early (LiveConnection::MaybePush).
    std::vector<LiveConnection*> awaited;
    for (auto& c : conns) {
      if (int fd = c->runtime_fd(); fd >= 0) {
        fds.push_back({fd, POLLIN, 0});
        awaited.push_back(c.get());
      }
    }
    const size_t polled = conns.size();
    int rc = ::poll(fds.data(), fds.size(), 100);
    if (rc < 0 && errno != EINTR) return Status::IOError(std::string("poll: ") + std::strerror(errno));
    if (rc > 0 && (fds[0].revents & POLLIN)) {
      int fd;
      while ((fd = ::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0) {
        conns.push_back(std::make_unique<LiveConnection>(fd, next_stream++, options, &report));
        ++report.connections;
      }
    }
    for (size_t i = 0; rc > 0 && i < awaited.size(); ++i)
      if (fds[1 + polled + i].revents & (POLLIN | POLLHUP | POLLERR)) awaited[i]->RuntimeReadable();
    for (size_t i = 1; rc > 0 && i <= polled; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      LiveConnection* c = conns[i - 1].get();
      ssize_t n = c->frames().ReadFrom(c->fd());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        c->Close();
        continue;
      }
      Status st = c->frames().Drain(&c->stream());
      if (!st.ok()) {
        if (report.error.empty()) report.error = "malformed data from the program's frontend: " + st.message();
        c->Close();
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](const auto& c) { return c->fd() < 0; }), conns.end());
    if (!child_done && ::waitpid(child, &wstatus, WNOHANG) == child) {
      child_done = true;
      child_exit = Clock::now();
      signals.ChildExited();
    }
    if (child_done && (conns.empty() || Clock::now() - child_exit > kDrainGrace)) break;
  }
  for (auto& c : conns) c->Close();
  report.exit_status = recorder::ExitStatus(wstatus);
  report.exit_description = recorder::DescribeExit(wstatus);
  return report;
}

}  // namespace genie::replayer

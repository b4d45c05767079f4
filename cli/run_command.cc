#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "cli/planning.h"
#include "planner/plan_lookup.h"
#include "common/human_format.h"
#include "common/json_writer.h"
#include "replayer/heartbeat.h"
#include "replayer/live.h"
#include "traces/trace_file.h"
#include "replayer/local_runtime.h"
#include "recorder/launcher.h"
#include "common/token_file.h"
#include "common/utc_time.h"
#include "replayer/pool_config.h"
#include "replayer/replay.h"
#include "traces/trace_paths.h"

namespace genie::cli {
namespace {

struct RunArgs {
  std::string pool;
  std::string trace;
  std::vector<std::string> program;  // live mode: the program and its arguments
  std::string config;
  std::string device = "cpu";
  bool json = false;
  int repeat = 1;
  std::string timeline;
  double rtol = 1e-4;
  double atol = 1e-5;
  std::string store;
  std::string plan;
  std::string pattern = "auto";
  std::vector<std::string> patterns;
  double heartbeat_timeout = 10;
};

// The plan `genie run` follows: --plan ID (which must be for this pool and
// trace), else the stored plan for the trace and pool, else a new one, stored.
Result<planner::PlanChoice> ChoosePlan(const RunArgs& a, const replayer::Config& config, const std::string& trace,
                                       planner::PlanStore& store) {
  GENIE_ASSIGN_OR_RETURN(planner::PoolShape shape, PoolShapeFor(config, a.pool, a.device));
  if (!a.plan.empty()) {
    GENIE_ASSIGN_OR_RETURN(planner::ExecutionPlan plan, store.Get(a.plan));
    if (plan.pool != a.pool)
      return Status::InvalidArgument("plan " + plan.id + " is for pool '" + plan.pool + "', not '" + a.pool + "'");
    GENIE_ASSIGN_OR_RETURN(std::string key, planner::TraceKeyOf(store, trace));
    if (key != plan.trace_key)
      return Status::InvalidArgument("plan " + plan.id + " was made for another trace (" + plan.trace_path +
                                     "); the segment fingerprints of " + trace + " differ");
    return planner::PlanChoice{std::move(plan), true, ""};
  }
  GENIE_ASSIGN_OR_RETURN(analyzer::WorkloadClass klass, PatternOption(a.pattern));
  GENIE_ASSIGN_OR_RETURN(analyzer::PatternLibrary library, LibraryFor(config, a.patterns));
  return planner::FindOrMakePlan(store, trace, shape, library, klass, false);
}

// "\r  what [#####.....] text" on stderr; cleared when done reaches total.
void Bar(const char* what, uint64_t done, uint64_t total, const std::string& text) {
  constexpr int kWidth = 30;
  int filled = static_cast<int>(kWidth * done / std::max<uint64_t>(total, 1));
  std::fprintf(stderr, "\r  %s [%s%s] %s ", what, std::string(filled, '#').c_str(),
               std::string(kWidth - filled, '.').c_str(), text.c_str());
  if (done >= total) std::fprintf(stderr, "\r%s\r", std::string(kWidth + 60, ' ').c_str());
  std::fflush(stderr);
}

void ReplayBar(uint64_t done, uint64_t total) {
  Bar("replay", done, total, FormatCount(done) + "/" + FormatCount(total) + " segments");
}

void UploadBar(uint64_t sent, uint64_t total) {
  Bar("upload", sent, total, FormatBytes(sent) + "/" + FormatBytes(total));
}

// One attempt at the replay on one pool: its plan, its runtime, the connection.
struct Attempt {
  std::string pool;
  planner::PlanChoice choice;
  std::unique_ptr<replayer::LocalRuntime> local;
  std::string address, token;
  std::unique_ptr<replayer::RuntimeClient> client;
  std::unique_ptr<replayer::HeartbeatMonitor> monitor;
};

// Plans (or finds the plan) for `pool` and connects to the runtime of its first fragment.
Status Prepare(const RunArgs& a, const replayer::Config& config, const std::string& trace, planner::PlanStore& store,
               Attempt* at) {
  RunArgs args = a;
  args.pool = at->pool;
  if (at->pool != a.pool) args.plan.clear();  // --plan names a plan of the first pool
  GENIE_ASSIGN_OR_RETURN(at->choice, ChoosePlan(args, config, trace, store));
  const planner::ExecutionPlan& plan = at->choice.plan;
  GENIE_RETURN_IF_ERROR(store.MarkUsed(plan.id));
  if (!a.json) {
    if (at->choice.from_store)
      std::fprintf(stderr, "genie run: plan %s (%s) from the store %s\n", plan.id.c_str(),
                   analyzer::WorkloadClassName(plan.klass), store.path().c_str());
    else
      std::fprintf(stderr, "genie run: planned %s (%s) and stored it in %s; `genie plans show %.8s` shows it\n",
                   plan.id.c_str(), analyzer::WorkloadClassName(plan.klass), store.path().c_str(), plan.id.c_str());
  }
  // The runtime of the plan's first fragment runs the trace.
  const uint32_t runtime = plan.fragments.empty() ? 0 : plan.fragments.front().placement.runtime;
  if (at->pool == "local") {
    GENIE_ASSIGN_OR_RETURN(at->local, replayer::LocalRuntime::Start(a.device));
    at->address = at->local->address();
  } else {
    GENIE_ASSIGN_OR_RETURN(replayer::Pool pool, replayer::FindPool(config, at->pool));
    if (runtime >= pool.runtimes.size())
      return Status::InvalidArgument("plan " + plan.id + " places work on runtime " + std::to_string(runtime) +
                                     ", but pool '" + at->pool + "' has " + std::to_string(pool.runtimes.size()));
    const replayer::RuntimeEndpoint& e = pool.runtimes[runtime];
    at->address = e.address;
    if (!e.token_file.empty()) {
      GENIE_ASSIGN_OR_RETURN(at->token, ReadToken(e.token_file));
    }
  }
  GENIE_ASSIGN_OR_RETURN(replayer::RuntimeClient client, replayer::RuntimeClient::Connect(at->address, at->token));
  at->client = std::make_unique<replayer::RuntimeClient>(std::move(client));
  // A runtime that stops answering fails the attempt within the timeout instead of hanging it.
  if (a.heartbeat_timeout > 0) {
    auto timeout = std::chrono::milliseconds(static_cast<int64_t>(a.heartbeat_timeout * 1000));
    GENIE_ASSIGN_OR_RETURN(at->monitor, replayer::HeartbeatMonitor::Start(at->address, at->token, at->client->fd(), timeout));
  }
  return Status::OK();
}

// Whether `path` is a trace file (rather than a program to run live).
bool IsTraceFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[sizeof(traces::kTraceMagic)] = {};
  return f && f.read(magic, sizeof(magic)) && std::memcmp(magic, traces::kTraceMagic, sizeof(magic)) == 0;
}

// The runtime a live program uses on `pool`: one started beside it for local, else
// the pool's first. `local` keeps a started local runtime alive.
Status AddLiveEndpoint(const RunArgs& a, const replayer::Config& config, const std::string& pool,
                       const cpu_set_t* local_cpus, std::unique_ptr<replayer::LocalRuntime>* local,
                       replayer::LiveOptions* o) {
  replayer::LiveEndpoint e;
  e.pool = pool;
  if (pool == "local") {
    GENIE_ASSIGN_OR_RETURN(*local, replayer::LocalRuntime::Start(a.device, local_cpus));
    e.address = (*local)->address();
    o->endpoints.push_back(e);
    return Status::OK();
  }
  GENIE_ASSIGN_OR_RETURN(replayer::Pool p, replayer::FindPool(config, pool));
  if (p.runtimes.empty()) return Status::InvalidArgument("pool '" + pool + "' has no runtimes");
  e.address = p.runtimes.front().address;
  if (!p.runtimes.front().token_file.empty()) {
    GENIE_ASSIGN_OR_RETURN(e.token, ReadToken(p.runtimes.front().token_file));
  }
  o->endpoints.push_back(e);
  return Status::OK();
}

// The pool, then its backup, and the backup's backup.
std::vector<std::string> PoolChain(const replayer::Config& config, const std::string& first) {
  std::vector<std::string> chain = {first};
  while (first != "local") {
    auto pool = replayer::FindPool(config, chain.back());
    if (!pool.ok() || pool->backup.empty() || std::find(chain.begin(), chain.end(), pool->backup) != chain.end())
      break;
    chain.push_back(pool->backup);
  }
  return chain;
}

// `genie run --pool P PROGRAM [ARGS...]`: the program's exit status is genie's.
int RunLiveProgram(const RunArgs& a, const replayer::Config& config) {
  replayer::LiveOptions o;
  o.argv = a.program;
  o.heartbeat_timeout = a.heartbeat_timeout;
  const char* early = std::getenv("GENIE_EARLY_ANSWERS");
  o.early_answers = !(early && std::string(early) == "0");
  o.notice = [](const std::string& line) { std::fprintf(stderr, "genie run: %s\n", line.c_str()); };
  // On a machine of few CPUs, the program apart from a local runtime (recorder::SplitCpus).
  const std::optional<recorder::CpuSplit> split = recorder::SplitCpus();
  if (split) o.program_cpus = split->program;
  std::unique_ptr<replayer::LocalRuntime> local;
  for (const auto& pool : PoolChain(config, a.pool)) {
    Status ready = AddLiveEndpoint(a, config, pool, split ? &split->helper : nullptr, &local, &o);
    if (!ready.ok()) return Fail(ready.message());
  }
  // The stored plan: found from the program's first segment; without one,
  // the run writes its segments down and plans from them once it ends.
  auto store = OpenStore(config, a.store);
  if (!store.ok()) return Fail(store.status().message());
  auto shape = PoolShapeFor(config, a.pool, a.device);
  if (!shape.ok()) return Fail(shape.status().message());
  auto klass = PatternOption(a.pattern);
  if (!klass.ok()) return Fail(klass.status().message());
  auto library = LibraryFor(config, a.patterns);
  if (!library.ok()) return Fail(library.status().message());
  std::optional<planner::ExecutionPlan> followed;
  o.find_plan = [&](uint64_t fingerprint) -> Result<std::optional<replayer::LiveEndpoint>> {
    GENIE_ASSIGN_OR_RETURN(std::optional<planner::ExecutionPlan> plan,
                           store.value()->FindCovering(fingerprint, a.pool));
    if (!plan) return std::optional<replayer::LiveEndpoint>();
    GENIE_RETURN_IF_ERROR(store.value()->MarkUsed(plan->id));
    replayer::LiveEndpoint e = o.endpoints.front();  // --pool local: the runtime started for it
    uint32_t runtime = plan->fragments.empty() ? 0 : plan->fragments.front().placement.runtime;
    if (a.pool != "local") {
      GENIE_ASSIGN_OR_RETURN(replayer::Pool pool, replayer::FindPool(config, a.pool));
      if (runtime >= pool.runtimes.size())
        return Status::InvalidArgument("plan " + plan->id + " places work on runtime " + std::to_string(runtime) +
                                       ", but pool '" + a.pool + "' has " + std::to_string(pool.runtimes.size()));
      e.address = pool.runtimes[runtime].address;
      e.token.clear();
      if (!pool.runtimes[runtime].token_file.empty()) {
        GENIE_ASSIGN_OR_RETURN(e.token, ReadToken(pool.runtimes[runtime].token_file));
      }
    }
    followed = std::move(plan);
    return std::optional<replayer::LiveEndpoint>(e);
  };
  auto trace_path = traces::DefaultTracePath(traces::ProgramOf(a.program), traces::kLiveTraceDir);
  if (!trace_path.ok()) return Fail(trace_path.status().message());
  o.trace_path = trace_path.value();
  std::string command;
  for (const auto& arg : a.program) command += (command.empty() ? "" : " ") + arg;
  o.trace_header.fields = {{"genie_version", GENIE_VERSION}, {"command", command}, {"payload", "hashes"},
                           {"created", UtcNow()}, {"recorded_by", "genie run (live, for its plan)"}};

  auto rep = replayer::RunLive(o);
  if (!rep.ok()) return Fail(rep.status().message());
  const replayer::LiveReport& r = rep.value();
  double median = replayer::Median(r.segment_ms);
  std::optional<planner::PlanChoice> made;
  std::string plan_error = r.trace_error;
  if (!r.trace_path.empty() && r.segments > 0) {
    auto choice = planner::FindOrMakePlan(*store.value(), r.trace_path, shape.value(), library.value(), klass.value(),
                                          false);
    if (choice.ok()) made = std::move(choice).value();
    else plan_error = choice.status().message();
  }
  const planner::ExecutionPlan* plan = followed ? &*followed : made ? &made->plan : nullptr;
  if (a.json) {
    JsonWriter w;
    w.BeginObject().Key("program").String(a.program.front()).Key("pool").String(r.pool).Key("runtime").String(r.address);
    w.Key("failovers").Uint(r.failovers);
    w.Key("device").String(r.device).Key("torch_version").String(r.torch_version);
    w.Key("exit_status").Int(r.exit_status).Key("connections").Uint(r.connections);
    w.Key("segments").Uint(r.segments).Key("parts").Uint(r.parts).Key("ops").Uint(r.ops).Key("materialized").Uint(r.materialized);
    w.Key("released").Uint(r.released).Key("round_trips").Uint(r.counters.round_trips);
    w.Key("bytes_up").Uint(r.counters.bytes_up).Key("bytes_down").Uint(r.counters.bytes_down);
    w.Key("uploaded_blobs").Uint(r.uploaded_blobs).Key("uploaded_bytes").Uint(r.uploaded_bytes);
    w.Key("already_present").Uint(r.already_present).Key("uploaded_ahead").Uint(r.uploaded_ahead);
    w.Key("ring_payloads").Uint(r.ring_payloads);
    w.Key("median_segment_ms").Double(median).Key("median_runtime_ms").Double(replayer::Median(r.runtime_ms));
    w.Key("graph_segments").Uint(r.graph_segments).Key("template_runs").Uint(r.template_runs);
    w.Key("ran_ahead").Uint(r.ran_ahead).Key("cycles").Uint(r.cycles).Key("pushed").Uint(r.pushed).Key("answered_first").Uint(r.answered_first);
    w.Key("answered_early").Uint(r.answered_early).Key("answered_pushed").Uint(r.answered_pushed);
    if (plan) {
      w.Key("plan").BeginObject().Key("id").String(plan->id).Key("class").String(analyzer::WorkloadClassName(plan->klass));
      w.Key("from_store").Bool(followed.has_value()).Key("trace").String(r.trace_path).EndObject();
    }
    w.Key("plan_error").String(plan_error);
    w.Key("error").String(r.error).Key("late_error").String(r.late_error).EndObject();
    std::cerr << w.str() << "\n";
  } else {
    // A program that used no remote tensor never met a runtime: nothing to say of one.
    std::string where = r.device.empty() ? "no segment ran"
                                         : r.address + ", " + r.device + ", torch " + r.torch_version;
    std::fprintf(stderr, "genie run: %s on %s (%s) %s\n", a.program.front().c_str(),
                 (r.pool.empty() ? a.pool : r.pool).c_str(), where.c_str(), r.exit_description.c_str());
    std::fprintf(stderr, "  segments %s, ops %s, round trips %s; uploaded %s in %s payloads; bytes up %s, down %s\n",
                 FormatCount(r.segments).c_str(), FormatCount(r.ops).c_str(), FormatCount(r.counters.round_trips).c_str(),
                 FormatBytes(r.uploaded_bytes).c_str(), FormatCount(r.uploaded_blobs).c_str(),
                 FormatBytes(r.counters.bytes_up).c_str(), FormatBytes(r.counters.bytes_down).c_str());
    std::fprintf(stderr, "  median time per segment %.3f ms (runtime %.3f ms); %s parts sent ahead; %s template runs\n",
                 median, replayer::Median(r.runtime_ms), FormatCount(r.parts).c_str(), FormatCount(r.template_runs).c_str());
    if (r.graph_segments > 0)
      std::fprintf(stderr, "  %s segments ran as CUDA graphs\n", FormatCount(r.graph_segments).c_str());
    if (r.ran_ahead > 0)
      std::fprintf(stderr, "  %s template runs were run ahead by the runtime, before they came\n",
                   FormatCount(r.ran_ahead).c_str());
    if (r.cycles > 0)
      std::fprintf(stderr,
                   "  %s steps went up as one message each, the step before repeated (cycles); %s answered before "
                   "they went (pushed)\n",
                   FormatCount(r.cycles).c_str(), FormatCount(r.pushed).c_str());
    if (r.answered_first > 0)
      std::fprintf(stderr, "  %s values came back before the ops after them ran (answered first)\n",
                   FormatCount(r.answered_first).c_str());
    if (r.answered_early > 0)
      std::fprintf(stderr,
                   "  %s values were answered from a fetch made early, with the step's first part (answered early); "
                   "%s of them in the program, from the value pushed to it before it asked\n",
                   FormatCount(r.answered_early).c_str(), FormatCount(r.answered_pushed).c_str());
    if (followed)
      std::fprintf(stderr, "  followed plan %s (%s) from the store %s\n", followed->id.c_str(),
                   analyzer::WorkloadClassName(followed->klass), store.value()->path().c_str());
    else if (made)
      std::fprintf(stderr, "  %s %s (%s) for this run's graph (%s) %s %s; the next run follows it\n",
                   made->from_store ? "found plan" : "planned", made->plan.id.c_str(),
                   analyzer::WorkloadClassName(made->plan.klass), r.trace_path.c_str(),
                   made->from_store ? "in" : "and stored it in", store.value()->path().c_str());
    if (!plan_error.empty()) std::fprintf(stderr, "  no plan was made: %s\n", plan_error.c_str());
    if (!r.error.empty()) std::fprintf(stderr, "  a segment failed (the program was told): %s\n", r.error.c_str());
  }
  if (!r.late_error.empty()) {
    // Its last ops failed after its last answer: the program could not hear of it.
    std::fprintf(stderr, "genie run: ops the program sent after its last answer failed on the runtime: %s\n",
                 r.late_error.c_str());
    return r.exit_status != 0 ? r.exit_status : 1;
  }
  return r.exit_status;
}

int RunRun(const RunArgs& a) {
  if (!a.program.empty()) {
    auto config = replayer::LoadConfig(a.config);
    if (!config.ok()) return Fail(config.status().message());
    return RunLiveProgram(a, config.value());
  }
  auto resolved = traces::TraceOrNewest(a.trace);
  if (!resolved.ok()) return Fail(resolved.status().message());
  const std::string& trace = resolved.value();
  auto config = replayer::LoadConfig(a.config);
  if (!config.ok()) return Fail(config.status().message());
  auto store = OpenStore(config.value(), a.store);
  if (!store.ok()) return Fail(store.status().message());

  replayer::ReplayOptions opts;
  opts.repeat = a.repeat;
  opts.rtol = a.rtol;
  opts.atol = a.atol;
  opts.timeline = a.timeline;
  if (!a.json && ::isatty(STDERR_FILENO)) {
    opts.progress = ReplayBar;
    opts.upload_progress = UploadBar;
  }
  // The pool, then its backup, and the backup's backup: a lost runtime moves the replay to the next.
  std::vector<std::string> chain = PoolChain(config.value(), a.pool);
  Attempt at;
  Result<replayer::ReplayReport> rep = Status::Internal("no attempt was made");
  for (size_t i = 0; i < chain.size(); ++i) {
    at = Attempt();
    at.pool = chain[i];
    Status ready = Prepare(a, config.value(), trace, *store.value(), &at);
    if (ready.ok()) {
      rep = replayer::Replay(trace, *at.client, opts);
      if (rep.ok()) break;
    }
    // Lost: unreachable, silent past the heartbeat timeout, or gone mid-replay.
    bool dead = at.monitor && at.monitor->dead();
    Status why = !ready.ok() ? ready : dead ? Status::IOError(at.monitor->reason()) : rep.status();
    if (opts.progress) std::fprintf(stderr, "\n");
    if (why.code() != Status::Code::kIOError || i + 1 == chain.size()) return Fail(why.message());
    std::fprintf(stderr, "genie run: %s; replaying on backup pool '%s'\n", why.message().c_str(), chain[i + 1].c_str());
  }
  at.monitor.reset();
  const planner::ExecutionPlan& plan = at.choice.plan;
  const std::string& address = at.address;
  auto& client = at.client;
  const replayer::ReplayReport& r = rep.value();
  const auto& hello = client->hello();
  double median = replayer::Median(r.segment_ms);
  // Steady state: the last repeat's segments.
  std::vector<double> last(r.segment_ms.end() - static_cast<std::ptrdiff_t>(r.segments), r.segment_ms.end());
  double steady = replayer::Median(last);
  bool ok = r.mismatches.empty();
  if (a.json) {
    JsonWriter w;
    w.BeginObject().Key("trace").String(trace).Key("pool").String(at.pool).Key("runtime").String(address);
    w.Key("plan").BeginObject().Key("id").String(plan.id).Key("class").String(analyzer::WorkloadClassName(plan.klass));
    w.Key("from_store").Bool(at.choice.from_store).Key("store").String(store.value()->path()).EndObject();
    w.Key("device").String(hello.device()).Key("torch_version").String(hello.torch_version());
    w.Key("segments").Uint(r.segments).Key("ops").Uint(r.ops).Key("repeat").Int(a.repeat);
    w.Key("round_trips").Uint(r.counters.round_trips).Key("bytes_up").Uint(r.counters.bytes_up);
    w.Key("bytes_down").Uint(r.counters.bytes_down).Key("payloads").Uint(r.payloads);
    w.Key("uploaded_blobs").Uint(r.uploaded_blobs).Key("uploaded_bytes").Uint(r.uploaded_bytes);
    w.Key("already_present").Uint(r.already_present).Key("upload_ms").Double(r.upload_ms);
    w.Key("median_segment_ms").Double(median).Key("steady_median_segment_ms").Double(steady);
    w.Key("median_runtime_ms").Double(replayer::Median(r.runtime_ms));
    w.Key("total_segment_ms").Double([&] { double s = 0; for (double v : last) s += v; return s; }());
    w.Key("verified").Uint(r.verified).Key("unverified").Uint(r.unverified);
    w.Key("max_abs_error").Double(r.max_abs_error).Key("max_rel_error").Double(r.max_rel_error);
    w.Key("mismatches").BeginArray();
    for (const auto& m : r.mismatches)
      w.BeginObject().Key("segment").Uint(m.segment).Key("value").Uint(m.value).Key("what").String(m.what).EndObject();
    w.EndArray().Key("ok").Bool(ok).EndObject();
    std::cout << w.str() << "\n";
  } else {
    std::printf("genie run: %s on %s (%s, %s, torch %s)\n", trace.c_str(), at.pool.c_str(), address.c_str(),
                hello.device().c_str(), hello.torch_version().c_str());
    std::printf("  segments %s, ops %s, repeat %d, round trips %s\n", FormatCount(r.segments).c_str(),
                FormatCount(r.ops).c_str(), a.repeat, FormatCount(r.counters.round_trips).c_str());
    std::printf("  uploaded %s in %s payloads (%s already on the runtime); bytes up %s, down %s\n",
                FormatBytes(r.uploaded_bytes).c_str(), FormatCount(r.uploaded_blobs).c_str(),
                FormatCount(r.already_present).c_str(), FormatBytes(r.counters.bytes_up).c_str(),
                FormatBytes(r.counters.bytes_down).c_str());
    std::printf("  median time per segment %.3f ms (steady state %.3f ms; runtime %.3f ms)\n", median, steady,
                replayer::Median(r.runtime_ms));
    if (ok) {
      std::printf("  verification: %s values match (max abs error %.3g, max rel error %.3g)%s\n",
                  FormatCount(r.verified).c_str(), r.max_abs_error, r.max_rel_error,
                  r.unverified ? (", " + FormatCount(r.unverified) + " recorded without a value").c_str() : "");
    } else {
      std::printf("  verification FAILED: %s of %s values differ\n", FormatCount(r.mismatches.size()).c_str(),
                  FormatCount(r.verified).c_str());
      for (size_t i = 0; i < r.mismatches.size() && i < 5; ++i)
        std::printf("    segment %llu value %llu %s\n", static_cast<unsigned long long>(r.mismatches[i].segment),
                    static_cast<unsigned long long>(r.mismatches[i].value), r.mismatches[i].what.c_str());
    }
    if (!a.timeline.empty()) std::printf("  wrote timeline %s\n", a.timeline.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace

// The options of `genie run`, on `cmd` (the subcommand, and the parser of
// options that follow a TRACE).
void AddRunOptions(CLI::App* cmd, RunArgs* a) {
  cmd->add_option("--pool", a->pool, "Pool from genie.yaml, or local (a runtime started beside it for this command); required");
  cmd->add_option("--config", a->config, "genie.yaml to read pools from");
  cmd->add_option("--device", a->device, "Device of the local runtime (--pool local)")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_option("--repeat", a->repeat, "Replay the trace N times in one session")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--timeline", a->timeline, "Write upload/execute/download spans as Chrome trace JSON");
  cmd->add_option("--store", a->store,
                  "Plan store (default: $GENIE_STORE, genie.yaml's `store:`, ~/.local/share/genie/plans.db)");
  cmd->add_option("--plan", a->plan, "Follow this stored plan (id or prefix); it must be for this pool and trace");
  cmd->add_option("--pattern", a->pattern, kPatternHelp)->capture_default_str();
  cmd->add_option("--patterns", a->patterns, "A YAML pattern file for planning (repeatable)")->allow_extra_args(false);
  cmd->add_option("--heartbeat-timeout", a->heartbeat_timeout,
                  "Seconds without an answered heartbeat after which the runtime counts as dead and the run fails "
                  "(0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rtol", a->rtol, "Relative tolerance for floats")->capture_default_str();
  cmd->add_option("--atol", a->atol, "Absolute tolerance for floats")->capture_default_str();
}

void AddRunCommand(CLI::App& app, Action* action) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Replay a trace on a pool of runtimes and verify its results, following the stored plan for the trace and pool "
      "(planning and storing one first when there is none); or run a program live on the pool: "
      "genie run --pool P [TRACE | PROGRAM [ARGS...]]");
  AddRunOptions(cmd, a.get());
  cmd->prefix_command();  // TRACE, or PROGRAM [ARGS...] passed through untouched
  cmd->footer(
      "TRACE defaults to the newest under ./traces/. Anything else is a program, run with its tensors on "
      "remote_accelerator executing on the pool; its output is its own and its exit status is genie's. A program "
      "follows the stored plan that covers its first segment; without one, its segments go to ./traces/live/ "
      "(payloads by hash only) and are planned when it exits.\n"
      "Exit status (replay): 0 when every recorded value matches, 1 on a mismatch or an error.");
  cmd->callback([a, cmd, action] {
    std::vector<std::string> rest = cmd->remaining();
    if (!rest.empty() && rest.front() == "--") rest.erase(rest.begin());
    if (!rest.empty() && IsTraceFile(rest.front())) {
      // Options may follow a trace: parse them as the subcommand's.
      a->trace = rest.front();
      CLI::App after("genie run TRACE");
      AddRunOptions(&after, a.get());
      std::vector<std::string> args(rest.rbegin(), rest.rend() - 1);  // CLI11 takes them reversed
      after.parse(args);
    } else {
      a->program = rest;
    }
    if (a->pool.empty()) throw CLI::RequiredError("--pool");
    *action = [a] { return RunRun(*a); };
  });
}

}  // namespace genie::cli

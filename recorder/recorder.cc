#include "recorder/recorder.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <algorithm>
#include <set>

#include "common/utc_time.h"
#include "recorder/frontend_protocol.h"
#include "recorder/launcher.h"
#include "traces/trace_paths.h"

#ifndef GENIE_VERSION
#error "GENIE_VERSION must be defined by the build"
#endif

namespace genie::recorder {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// After the program exits, how long descendants that inherited a connection may keep it open.
constexpr auto kDrainGrace = std::chrono::seconds(10);

struct Connection {
  int fd = -1;
  FrameBuffer frames;
  std::unique_ptr<FrontendStream> stream;
  bool failed = false;
};

std::string HostName() {
  utsname u{};
  ::uname(&u);
  return u.nodename;
}

}  // namespace

Result<RecordResult> Record(const RecordOptions& options) {
  if (options.argv.empty()) return Status::InvalidArgument("no program given to record");
  if (options.payload != "full" && options.payload != "inputs" && options.payload != "none")
    return Status::InvalidArgument("--payload must be full, inputs or none, not '" + options.payload + "'");
  if (!fs::exists(fs::path(FrontendDir()) / "genie" / "bootstrap.py"))
    return Status::NotFound("the capture frontend is missing from " + FrontendDir() + " (set GENIE_FRONTEND_DIR)");

  RecordResult result;
  if (options.output.empty()) {
    GENIE_ASSIGN_OR_RETURN(result.trace_path, traces::DefaultTracePath(traces::ProgramOf(options.argv)));
  } else {
    result.trace_path = options.output;
  }

  ListenSocket listener;
  GENIE_RETURN_IF_ERROR(listener.Open());

  traces::TraceHeader header;
  header.fields = {{"genie_version", GENIE_VERSION}, {"host", HostName()}, {"command", options.command_line},
                   {"payload", options.payload}, {"created", UtcNow()}};
  // Interpreter details arrive in the first HELLO; they go in the header of the next format version.
  GENIE_ASSIGN_OR_RETURN(auto writer, traces::TraceWriter::Create(result.trace_path, header));

  auto start = Clock::now();
  auto spawned = Spawn(options.argv, listener.path(), {{"GENIE_PAYLOAD", options.payload}});
  if (!spawned.ok()) {
    writer.reset();
    std::error_code ec;
    fs::remove(result.trace_path, ec);
    return spawned.status();
  }
  pid_t child = spawned.value();
  ChildSignals signals(child);

  std::vector<std::unique_ptr<Connection>> conns;
  std::set<std::string> problems;
  bool child_done = false;
  int wstatus = 0;
  Clock::time_point child_exit;
  uint32_t next_stream = 0;
  Status write_error;

  auto close_conn = [&](Connection* c, const std::string& why) {
    if (c->stream && !c->stream->ended() && !c->failed) {
      const Hello* h = c->stream->hello();
      bool has_segments = c->stream->segments() > 0;
      if (!h || h->has_torch || has_segments) {
        result.truncated = true;
        std::string who = h ? "process " + std::to_string(h->pid) : "a process";
        if (result.reason.empty()) result.reason = who + " " + why;
      }
    }
    ::close(c->fd);
    c->fd = -1;
  };

  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({listener.fd(), POLLIN, 0});
    for (auto& c : conns) fds.push_back({c->fd, POLLIN, 0});
    int rc = ::poll(fds.data(), fds.size(), 100);
    if (rc < 0 && errno != EINTR) return Status::IOError(std::string("poll: ") + std::strerror(errno));
    if (rc > 0 && (fds[0].revents & POLLIN)) {
      int fd;
      while ((fd = ::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0) {
        auto c = std::make_unique<Connection>();
        c->fd = fd;
        c->stream = std::make_unique<FrontendStream>(next_stream++, writer.get());
        conns.push_back(std::move(c));
      }
    }
    for (size_t i = 1; rc > 0 && i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Connection* c = conns[i - 1].get();
      ssize_t n = c->frames.ReadFrom(c->fd);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        close_conn(c, "disconnected without ending its capture (it crashed or was killed)");
        continue;
      }
      Status st = c->frames.Drain(c->stream.get());
      if (!st.ok()) {
        if (st.code() == Status::Code::kIOError) write_error = st;
        result.truncated = true;
        if (result.reason.empty()) result.reason = "malformed data from the frontend: " + st.message();
        c->failed = true;
        close_conn(c, "");
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [&](const auto& c) {
                                 if (c->fd >= 0) return false;
                                 if (const Hello* h = c->stream->hello(); h && !h->has_torch)
                                   problems.insert("the program's interpreter " + h->interpreter + " (Python " +
                                                   h->python_version +
                                                   ") cannot import torch; run the program with an interpreter "
                                                   "that can (on Debian: /usr/bin/python3 with python3-torch)");
                                 return true;
                               }),
                conns.end());
    if (!write_error.ok()) break;
    if (!child_done) {
      pid_t w = ::waitpid(child, &wstatus, WNOHANG);
      if (w == child) {
        child_done = true;
        child_exit = Clock::now();
        signals.ChildExited();
      }
    }
    if (child_done && (conns.empty() || Clock::now() - child_exit > kDrainGrace)) break;
  }
  for (auto& c : conns) close_conn(c.get(), "was still connected when recording stopped");
  if (!child_done) {
    ::kill(child, SIGTERM);
    ::waitpid(child, &wstatus, 0);
  }
  if (!write_error.ok()) return write_error;

  result.capture_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
  result.exit_status = ExitStatus(wstatus);
  if (result.exit_status != 0) {
    result.truncated = true;
    result.reason = "the program " + DescribeExit(wstatus) + (result.reason.empty() ? "" : "; " + result.reason);
  }
  if (next_stream == 0)
    problems.insert("the program never connected to genie, so nothing was captured (is it a Python program?)");
  result.problems.assign(problems.begin(), problems.end());

  traces::TraceFooter footer;
  footer.exit_status = result.exit_status;
  footer.truncated = result.truncated;
  footer.reason = result.reason;
  footer.capture_ns = result.capture_ns;
  GENIE_RETURN_IF_ERROR(writer->Finish(footer));
  result.stats = writer->stats();
  return result;
}

}  // namespace genie::recorder

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
#include "traces/trace_paths.h"

#ifndef GENIE_SOURCE_FRONTEND_DIR
#error "GENIE_SOURCE_FRONTEND_DIR must be defined by the build"
#endif
#ifndef GENIE_VERSION
#error "GENIE_VERSION must be defined by the build"
#endif

namespace genie::recorder {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadBytes = 1u << 20;
// After the program exits, how long descendants that inherited a connection may keep it open.
constexpr auto kDrainGrace = std::chrono::seconds(10);

volatile sig_atomic_t g_child_pid = 0;

void ForwardTerm(int sig) {
  if (g_child_pid > 0) ::kill(g_child_pid, sig);
}

struct Connection {
  int fd = -1;
  std::string buffer;
  size_t consumed = 0;
  std::unique_ptr<FrontendStream> stream;
  bool failed = false;
};

class ListenSocket {
 public:
  ~ListenSocket() {
    if (fd_ >= 0) ::close(fd_);
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  Status Open() {
    char tmpl[] = "/tmp/genie-record-XXXXXX";
    if (!::mkdtemp(tmpl)) return Status::IOError(std::string("cannot create a socket folder: ") + std::strerror(errno));
    dir_ = tmpl;
    path_ = dir_ + "/ipc.sock";
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return Status::IOError(std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd_, 16) != 0)
      return Status::IOError("cannot listen on " + path_ + ": " + std::strerror(errno));
    return Status::OK();
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string dir_;
  std::string path_;
};

std::string HostName() {
  utsname u{};
  ::uname(&u);
  return u.nodename;
}

// Starts argv with the frontend on its import path. Returns the pid, or the
// reason exec failed (reported through a close-on-exec pipe).
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& ipc_path, const std::string& payload) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return Status::IOError(std::string("pipe: ") + std::strerror(errno));
  std::string pythonpath = FrontendDir();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) pythonpath += std::string(":") + old;

  pid_t pid = ::fork();
  if (pid < 0) return Status::IOError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(pipefd[0]);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGQUIT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::setenv("GENIE_IPC", ipc_path.c_str(), 1);
    ::setenv("GENIE_PAYLOAD", payload.c_str(), 1);
    ::setenv("PYTHONPATH", pythonpath.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    int err = errno;
    ssize_t ignored = ::write(pipefd[1], &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  ::close(pipefd[1]);
  int err = 0;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n == sizeof(err)) {
    ::waitpid(pid, nullptr, 0);
    return Status::NotFound("cannot start '" + argv[0] + "': " + std::strerror(err));
  }
  return pid;
}

// Parses every complete frame in the connection's buffer.
Status DrainFrames(Connection* c) {
  while (c->buffer.size() - c->consumed >= kFrameHeadBytes) {
    const auto* p = reinterpret_cast<const uint8_t*>(c->buffer.data()) + c->consumed;
    uint32_t len;
    std::memcpy(&len, p, 4);
    uint8_t type = p[4];
    if (len > kMaxFrameBody)
      return Status::Corruption("frame of " + std::to_string(len) + " bytes exceeds the limit");
    if (c->buffer.size() - c->consumed < kFrameHeadBytes + len) break;
    if (type < 1 || type > 5) return Status::Corruption("unknown frame type " + std::to_string(type));
    GENIE_RETURN_IF_ERROR(c->stream->HandleFrame(static_cast<FrameType>(type), p + kFrameHeadBytes, len));
    c->consumed += kFrameHeadBytes + len;
  }
  if (c->consumed > 0 && c->consumed * 2 >= c->buffer.size()) {
    c->buffer.erase(0, c->consumed);
    c->consumed = 0;
  }
  return Status::OK();
}

}  // namespace

std::string FrontendDir() {
  if (const char* d = std::getenv("GENIE_FRONTEND_DIR"); d && *d) return d;
  return GENIE_SOURCE_FRONTEND_DIR;
}

Result<RecordResult> Record(const RecordOptions& options) {
  if (options.argv.empty()) return Status::InvalidArgument("no program given to record");
  if (options.payload != "full" && options.payload != "inputs" && options.payload != "none")
    return Status::InvalidArgument("--payload must be full, inputs or none, not '" + options.payload + "'");
  if (!fs::exists(fs::path(FrontendDir()) / "genie" / "bootstrap.py"))
    return Status::NotFound("the capture frontend is missing from " + FrontendDir() + " (set GENIE_FRONTEND_DIR)");

  RecordResult result;
  if (options.output.empty()) {
    GENIE_ASSIGN_OR_RETURN(result.trace_path, traces::DefaultTracePath(options.argv.size() > 1 &&
                                                                               fs::path(options.argv[0]).filename().string().rfind("python", 0) == 0
                                                                           ? options.argv[1]
                                                                           : options.argv[0]));
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
  auto spawned = Spawn(options.argv, listener.path(), options.payload);
  if (!spawned.ok()) {
    writer.reset();
    std::error_code ec;
    fs::remove(result.trace_path, ec);
    return spawned.status();
  }
  pid_t child = spawned.value();
  g_child_pid = child;
  struct sigaction ignore{}, forward{}, old_int{}, old_quit{}, old_term{};
  ignore.sa_handler = SIG_IGN;
  forward.sa_handler = ForwardTerm;
  ::sigaction(SIGINT, &ignore, &old_int);   // the program gets the terminal's signals itself
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  ::sigaction(SIGTERM, &forward, &old_term);

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

  std::vector<char> readbuf(kReadBytes);
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
      ssize_t n = ::read(c->fd, readbuf.data(), readbuf.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        close_conn(c, "disconnected without ending its capture (it crashed or was killed)");
        continue;
      }
      c->buffer.append(readbuf.data(), static_cast<size_t>(n));
      Status st = DrainFrames(c);
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
        g_child_pid = 0;
      }
    }
    if (child_done && (conns.empty() || Clock::now() - child_exit > kDrainGrace)) break;
  }
  for (auto& c : conns) close_conn(c.get(), "was still connected when recording stopped");
  if (!child_done) {
    ::kill(child, SIGTERM);
    ::waitpid(child, &wstatus, 0);
    g_child_pid = 0;
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (!write_error.ok()) return write_error;

  result.capture_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
  if (WIFEXITED(wstatus)) {
    result.exit_status = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    result.exit_status = 128 + WTERMSIG(wstatus);
  }
  if (result.exit_status != 0) {
    result.truncated = true;
    std::string how = WIFSIGNALED(wstatus) ? std::string("was killed by signal ") + strsignal(WTERMSIG(wstatus))
                                           : "exited with status " + std::to_string(result.exit_status);
    result.reason = "the program " + how + (result.reason.empty() ? "" : "; " + result.reason);
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

#include "recorder/launcher.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#ifndef GENIE_SOURCE_FRONTEND_DIR
#error "GENIE_SOURCE_FRONTEND_DIR must be defined by the build"
#endif

namespace genie::recorder {
namespace {

volatile sig_atomic_t g_child_pid = 0;

void ForwardTerm(int sig) {
  if (g_child_pid > 0) ::kill(g_child_pid, sig);
}

}  // namespace

std::string FrontendDir() {
  if (const char* d = std::getenv("GENIE_FRONTEND_DIR"); d && *d) return d;
  return GENIE_SOURCE_FRONTEND_DIR;
}

ListenSocket::~ListenSocket() {
  if (fd_ >= 0) ::close(fd_);
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Status ListenSocket::Open() {
  char tmpl[] = "/tmp/genie-ipc-XXXXXX";
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

void SchedHelper(bool batch) {
  // -1: not yet asked; 0: left as it was (off, or the user's policy); 1: default; 2: batch.
  static int state = -1;
  if (state == -1) {
    const char* env = std::getenv("GENIE_SCHED_BATCH");
    state = (env && std::strcmp(env, "0") == 0) || ::sched_getscheduler(0) != SCHED_OTHER ? 0 : 1;
  }
  if (state == 0 || (state == 2) == batch) return;
  sched_param p{};
  // Best effort: either policy works.
  if (::sched_setscheduler(0, batch ? SCHED_BATCH : SCHED_OTHER, &p) == 0) state = batch ? 2 : 1;
}

namespace {
// SplitCpus's answer, for HelperBesideRuntime: all the CPUs genie run may
// use, and the runtime's. `beside`: where the calling thread is now.
struct Placement {
  bool split = false;
  bool beside = false;
  cpu_set_t all;
  cpu_set_t helper;
};
Placement placement;
}  // namespace

std::optional<CpuSplit> SplitCpus() {
  const char* env = std::getenv("GENIE_CPU_SPLIT");
  const bool forced = env && std::strcmp(env, "1") == 0;
  if (env && std::strcmp(env, "0") == 0) return std::nullopt;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return std::nullopt;
  const int count = CPU_COUNT(&allowed);
  if (count < 2 || (count > 3 && !forced)) return std::nullopt;
  int last = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) last = cpu;
  CpuSplit split;
  CPU_ZERO(&split.helper);
  CPU_SET(last, &split.helper);
  split.program = allowed;
  CPU_CLR(last, &split.program);
  placement.split = true;
  placement.all = allowed;
  placement.helper = split.helper;
  return split;
}

void HelperBesideRuntime(bool beside) {
  if (!placement.split || placement.beside == beside) return;
  // Best effort, like SchedHelper: a refusal leaves the thread where it was.
  const cpu_set_t& cpus = beside ? placement.helper : placement.all;
  if (::sched_setaffinity(0, sizeof(cpus), &cpus) == 0) placement.beside = beside;
}

Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& ipc_path,
                    const std::vector<std::pair<std::string, std::string>>& env, const cpu_set_t* cpus) {
  if (argv.empty()) return Status::InvalidArgument("no program given");
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
    ::signal(SIGPIPE, SIG_DFL);
    ::setenv("GENIE_IPC", ipc_path.c_str(), 1);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::setenv("PYTHONPATH", pythonpath.c_str(), 1);
    if (cpus) ::sched_setaffinity(0, sizeof(*cpus), cpus);
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

ChildSignals::ChildSignals(pid_t child) {
  g_child_pid = child;
  struct sigaction ignore{}, forward{};
  ignore.sa_handler = SIG_IGN;
  forward.sa_handler = ForwardTerm;
  ::sigaction(SIGINT, &ignore, &old_int_);  // the program gets the terminal's signals itself
  ::sigaction(SIGQUIT, &ignore, &old_quit_);
  ::sigaction(SIGTERM, &forward, &old_term_);
}

void ChildSignals::ChildExited() { g_child_pid = 0; }

ChildSignals::~ChildSignals() {
  g_child_pid = 0;
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGQUIT, &old_quit_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
}

ssize_t FrameBuffer::ReadFrom(int fd) {
  constexpr size_t kRead = 1u << 20;
  size_t held = size_ - consumed_;
  size_t want = kRead;
  if (held >= kFrameHeadBytes) {
    uint32_t len;
    std::memcpy(&len, data_.get() + consumed_, 4);
    if (len <= kMaxFrameBody && kFrameHeadBytes + len > held) want = std::max(want, kFrameHeadBytes + len - held);
  }
  if (capacity_ - size_ < want) {
    // Room at the front first; a new buffer only when that is not enough.
    if (consumed_ > 0) {
      std::memmove(data_.get(), data_.get() + consumed_, held);
      size_ = held;
      consumed_ = 0;
    }
    if (capacity_ - size_ < want) {
      size_t capacity = std::max(capacity_ * 2, size_ + want);
      std::unique_ptr<char[]> grown(new char[capacity]);
      if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
      data_ = std::move(grown);
      capacity_ = capacity;
    }
  }
  iovec iov{data_.get() + size_, want};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n > 0) size_ += static_cast<size_t>(n);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds_.push_back(received);
    }
  }
  return n;
}

FrameBuffer::~FrameBuffer() {
  for (int fd : fds_) ::close(fd);
}

Status FrameBuffer::Drain(FrontendStream* stream) {
  for (int fd : fds_) stream->ReceiveFd(fd);
  fds_.clear();
  while (size_ - consumed_ >= kFrameHeadBytes) {
    const auto* p = reinterpret_cast<const uint8_t*>(data_.get()) + consumed_;
    uint32_t len;
    std::memcpy(&len, p, 4);
    uint8_t type = p[4];
    if (len > kMaxFrameBody) return Status::Corruption("frame of " + std::to_string(len) + " bytes exceeds the limit");
    if (size_ - consumed_ < kFrameHeadBytes + len) break;
    if (type < 1 || type > static_cast<uint8_t>(FrameType::kRingPayload)) return Status::Corruption("unknown frame type " + std::to_string(type));
    GENIE_RETURN_IF_ERROR(stream->HandleFrame(static_cast<FrameType>(type), p + kFrameHeadBytes, len));
    consumed_ += kFrameHeadBytes + len;
  }
  if (consumed_ == size_) size_ = consumed_ = 0;
  return Status::OK();
}

int ExitStatus(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 0;
}

std::string DescribeExit(int wstatus) {
  if (WIFSIGNALED(wstatus)) return std::string("was killed by signal ") + strsignal(WTERMSIG(wstatus));
  return "exited with status " + std::to_string(ExitStatus(wstatus));
}

}  // namespace genie::recorder

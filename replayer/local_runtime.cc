#include "replayer/local_runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace genie::replayer {

Result<std::unique_ptr<LocalRuntime>> LocalRuntime::Start(const std::string& device, const cpu_set_t* cpus) {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return Status::IOError(std::string("cannot find the genie executable: ") + std::strerror(errno));
  exe[n] = '\0';
  // genie-serve lives beside genie.
  std::string serve(exe);
  serve = serve.substr(0, serve.rfind('/') + 1) + "genie-serve";
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status::IOError(std::string("pipe: ") + std::strerror(errno));
  pid_t parent = ::getpid();
  // A unix socket in the abstract namespace: no TCP stack on each message, no file to leave behind.
  static int started = 0;
  std::string listen = "unix:@genie-local-" + std::to_string(parent) + "-" + std::to_string(started++);
  pid_t pid = ::fork();
  if (pid < 0) return Status::IOError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The runtime goes with genie even when genie is killed outright (no destructor runs then).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(0);
    ::dup2(out[1], STDOUT_FILENO);
    if (cpus) ::sched_setaffinity(0, sizeof(*cpus), cpus);
    std::vector<std::string> args = {serve, "--listen", listen, "--device", device, "--log-level", "warn"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(serve.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  auto rt = std::make_unique<LocalRuntime>();
  rt->pid_ = pid;
  // serve prints "listening on HOST:PORT" once it accepts connections.
  std::string line;
  char c;
  while (line.size() < 256) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 30000) <= 0) break;
    ssize_t k = ::read(out[0], &c, 1);
    if (k <= 0 || c == '\n') break;
    line.push_back(c);
  }
  ::close(out[0]);
  const std::string prefix = "listening on ";
  if (line.rfind(prefix, 0) != 0) return Status::IOError("the local runtime did not start (see its messages above)");
  rt->address_ = line.substr(prefix.size());
  return rt;
}

LocalRuntime::~LocalRuntime() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
  }
}

}  // namespace genie::replayer

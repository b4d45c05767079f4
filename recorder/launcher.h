// Starting a program with the capture frontend on its import path, and the
// unix socket its frontend connects back to. Shared by `genie record` and
// live `genie run PROGRAM`.
#pragma once

#include <sys/types.h>

#include <signal.h>

#include <sched.h>

#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "recorder/frontend_protocol.h"

namespace genie::recorder {

// The folder holding the frontend package and its sitecustomize:
// $GENIE_FRONTEND_DIR, else the source tree's recorder/python.
std::string FrontendDir();

// A listening unix socket in a fresh private folder, removed with it.
class ListenSocket {
 public:
  ListenSocket() = default;
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ~ListenSocket();
  Status Open();
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string dir_;
  std::string path_;
};

// Starts argv with the frontend on its import path, GENIE_IPC set to
// `ipc_path` and `env` added; with `cpus`, the program may run on those CPUs
// only (see SplitCpus). Returns the pid, or why exec failed.
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& ipc_path,
                    const std::vector<std::pair<std::string, std::string>>& env,
                    const cpu_set_t* cpus = nullptr);

// genie run on a machine of two or three CPUs (those it may run on): the
// program, genie run and a local runtime are three busy processes. When the
// scheduler puts the program on the CPU of one of the others (it favours
// waking a process beside the one that woke it), a training step's Python
// waits for them instead of running beside them. SplitCpus keeps the last
// CPU for the runtime (`helper`: LocalRuntime::Start) and the others for
// the program (`program`: Spawn); genie run itself goes beside the runtime
// only while it answers a training loop early (HelperBesideRuntime), and a
// decode loop, whose steps wait on genie, runs it anywhere. Nothing is moved
// here. nullopt: four CPUs or more (there is room), one, or
// GENIE_CPU_SPLIT=0; GENIE_CPU_SPLIT=1 splits at any count from two.
struct CpuSplit {
  cpu_set_t program;
  cpu_set_t helper;
};
std::optional<CpuSplit> SplitCpus();

// With a split (SplitCpus, which must come first): `beside` moves the calling
// thread to the runtime's CPU, false back to all of them; one system call
// per change. Without one, nothing.
void HelperBesideRuntime(bool beside);

// genie run's own process, beside the program it serves: `batch` takes the
// calling thread from the default scheduling policy to SCHED_BATCH, and
// back. Batch, a frame from the program or a runtime's reply that wakes it
// does not preempt the program where they share a core: a training step's
// Python goes on while genie reads its parts (live.cc sets it while it
// answers early). A decode loop, which waits on each answer, wants genie to
// run at once. A policy the user chose (chrt) is kept, and so is the
// default with GENIE_SCHED_BATCH=0.
void SchedHelper(bool batch);

// While alive: the terminal's SIGINT and SIGQUIT go to the program alone
// (genie ignores them), and a SIGTERM to genie is forwarded to `child`.
class ChildSignals {
 public:
  explicit ChildSignals(pid_t child);
  ~ChildSignals();
  void ChildExited();  // stop forwarding

 private:
  struct sigaction old_int_{}, old_quit_{}, old_term_{};
};

// Bytes read from one frontend connection, parsed into frames as they complete.
class FrameBuffer {
 public:
  FrameBuffer() = default;
  ~FrameBuffer();
  FrameBuffer(const FrameBuffer&) = delete;
  FrameBuffer& operator=(const FrameBuffer&) = delete;

  // One read of socket `fd` straight into the buffer: up to 1 MiB, or the
  // rest of a larger frame whose head is in (a batch of images arrives
  // without a copy through a reader's buffer, and the buffer grows once for
  // it, kept for the next; no byte is zeroed first). File descriptors that
  // come with the bytes (a RING frame's) are kept for Drain. Returns
  // recvmsg's result.
  ssize_t ReadFrom(int fd);
  // Hands the file descriptors read to `stream` (FrontendStream::ReceiveFd),
  // then every complete frame; a malformed one is Corruption.
  Status Drain(FrontendStream* stream);

 private:
  std::vector<int> fds_;  // received, not yet handed on
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;      // bytes read into data_
  size_t capacity_ = 0;
  size_t consumed_ = 0;  // bytes of data_ handed on
};

// The program's exit status: its exit code, or 128 + the signal that killed it.
int ExitStatus(int wstatus);
// "exited with status 3", "was killed by signal Killed".
std::string DescribeExit(int wstatus);

}  // namespace genie::recorder

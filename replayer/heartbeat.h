// Watching a runtime for signs of life while a client waits on it.
//
// The monitor holds its own connection to the runtime (which serves each
// connection on its own thread, so a runtime busy with a long segment still
// answers) and sends a Heartbeat every `timeout` / 4, at most every second.
// When no heartbeat has been answered for `timeout`, or the connection
// breaks, the runtime is declared dead: the watched socket is shut down, so
// a client blocked on it fails at once instead of hanging, and reason() says
// why.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "replayer/runtime_client.h"

namespace genie::replayer {

class HeartbeatMonitor {
 public:
  // Connects (with `token`) and starts watching; `watched_fd` is the socket to shut down.
  static Result<std::unique_ptr<HeartbeatMonitor>> Start(const std::string& address, const std::string& token,
                                                         int watched_fd, std::chrono::milliseconds timeout);
  ~HeartbeatMonitor();  // stops watching

  bool dead() const { return dead_.load(); }
  // "runtime 10.0.0.5:7070 stopped answering heartbeats for 10.0 s"; "" while alive.
  std::string reason() const;
  uint64_t heartbeats() const { return answered_.load(); }

 private:
  HeartbeatMonitor(RuntimeClient client, int watched_fd, std::chrono::milliseconds timeout)
      : client_(std::move(client)), watched_fd_(watched_fd), timeout_(timeout) {}
  void Watch();

  RuntimeClient client_;
  int watched_fd_;
  std::chrono::milliseconds timeout_;
  std::atomic<bool> dead_{false};
  std::atomic<uint64_t> answered_{0};
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::string reason_;
  std::thread thread_;
};

}  // namespace genie::replayer

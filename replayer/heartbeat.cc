#include "replayer/heartbeat.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstdio>

namespace genie::replayer {

Result<std::unique_ptr<HeartbeatMonitor>> HeartbeatMonitor::Start(const std::string& address, const std::string& token,
                                                                  int watched_fd, std::chrono::milliseconds timeout) {
  GENIE_ASSIGN_OR_RETURN(RuntimeClient client, RuntimeClient::Connect(address, token));
  std::unique_ptr<HeartbeatMonitor> m(new HeartbeatMonitor(std::move(client), watched_fd, timeout));
  m->thread_ = std::thread([p = m.get()] { p->Watch(); });
  return m;
}

HeartbeatMonitor::~HeartbeatMonitor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  // A heartbeat in flight waits at most for the timeout; closing its socket ends it sooner.
  ::shutdown(client_.fd(), SHUT_RDWR);
  thread_.join();
}

std::string HeartbeatMonitor::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}

void HeartbeatMonitor::Watch() {
  using Clock = std::chrono::steady_clock;
  const auto interval = std::min<std::chrono::milliseconds>(timeout_ / 4, std::chrono::milliseconds(1000));
  auto last_answer = Clock::now();
  for (uint64_t nonce = 1;; ++nonce) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_cv_.wait_for(lock, interval, [&] { return stop_; })) return;
    }
    auto left = timeout_ - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_answer);
    Status st = client_.Heartbeat(nonce, static_cast<int>(std::max<int64_t>(left.count(), 1)));
    if (st.ok()) {
      last_answer = Clock::now();
      answered_.fetch_add(1);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    char secs[32];
    std::snprintf(secs, sizeof(secs), "%.1f", std::chrono::duration<double>(Clock::now() - last_answer).count());
    reason_ = "runtime " + client_.address() + " stopped answering heartbeats for " + secs + " s (" + st.message() + ")";
    dead_ = true;
    ::shutdown(watched_fd_, SHUT_RDWR);
    return;
  }
}

}  // namespace genie::replayer

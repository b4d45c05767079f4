// `genie serve`: accepts client connections and answers the wire protocol
// (runtime/protocol) with a Runtime. One thread per connection; each
// connection is one session, whose values are freed when it closes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"

namespace genie::server {

struct ServeOptions {
  std::string listen = "127.0.0.1:7070";
  std::string device = "cpu";
  std::string token;          // "" accepts any client
  uint64_t max_memory = 0;    // bytes for cached tensors; 0: no limit
  uint64_t max_payload = 64ull << 30;
  bool tf32_conv = false;     // convolutions on CUDA may use TF32 (eager PyTorch's default)
  bool run_ahead = true;      // run a fed loop's next step before it comes (server.cc, run-ahead)
  int run_ahead_steps = 2;    // how many steps: 2 also runs the one after it once the next's answer is pushed
  int spin_us = 1000;         // while a loop runs ahead, a connection polls this long for its next request before it sleeps
};

// Serves until SIGTERM or SIGINT, then closes every connection and returns OK.
// `on_listening` is called with the address clients connect to (its port
// bound) once connections are accepted.
Status Serve(const ServeOptions& options, const std::function<void(const std::string& address)>& on_listening);

}  // namespace genie::server

// `--pool local`: a `genie serve` on a unix socket of its own for the length of
// one command.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace genie::replayer {

class LocalRuntime {
 public:
  // Starts genie-serve (beside this executable) on unix:@genie-local-PID-N with `device`, and waits
  // until it listens; with `cpus`, it runs on those CPUs only (recorder::SplitCpus).
  static Result<std::unique_ptr<LocalRuntime>> Start(const std::string& device, const cpu_set_t* cpus = nullptr);
  // Stops it (SIGTERM, then waits).
  ~LocalRuntime();

  const std::string& address() const { return address_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
};

}  // namespace genie::replayer

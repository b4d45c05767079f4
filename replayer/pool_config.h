// Pools of runtimes, from genie.yaml:
//
//   pools:
//     gpu-pool-1:
//       runtimes:
//         - {address: 10.0.0.5:7070, transport: tcp, token_file: /etc/genie/token, devices: [cuda:0, cuda:1]}
//         - {address: "unix:/run/genie/runtime.sock"}   # transport unix, from the address
//       backup: gpu-pool-2
//   store: ~/.local/share/genie/plans.db
//   patterns: [my-patterns.yaml]      # pattern files for genie analyze/plan, relative to this file
//
// The file is the one given with --config, else the first that exists of
// ./genie.yaml, $GENIE_CONFIG, ~/.config/genie/genie.yaml. No file is an
// empty configuration; a malformed one is an error naming its line.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace genie::replayer {

struct RuntimeEndpoint {
  std::string address;           // HOST:PORT, unix:PATH or unix:@NAME (transport/socket.h)
  std::string transport = "tcp";  // "tcp" or "unix", as the address says
  std::string token_file;        // "" when the runtime takes no token
  std::vector<std::string> devices = {"default"};  // `devices: [cuda:0, cuda:1]`; "default": the runtime's own
};

struct Pool {
  std::string name;
  std::vector<RuntimeEndpoint> runtimes;
  std::string backup;
};

struct Config {
  std::string path;  // the file read, "" when none exists
  std::map<std::string, Pool> pools;
  std::string store;
  std::vector<std::string> patterns;  // pattern files, made absolute
};

Result<Config> LoadConfig(const std::string& explicit_path);

// The pool named `name`; NotFound lists the pools that exist.
Result<Pool> FindPool(const Config& config, const std::string& name);

}  // namespace genie::replayer

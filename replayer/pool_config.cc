#include "replayer/pool_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>

#include "runtime/transport/socket.h"

namespace genie::replayer {
namespace {

namespace fs = std::filesystem;

std::string Where(const std::string& path, const YAML::Node& n) {
  return path + ":" + std::to_string(n.Mark().line + 1);
}

}  // namespace

Result<Config> LoadConfig(const std::string& explicit_path) {
  std::vector<std::string> candidates;
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path)) return Status::NotFound("config file " + explicit_path + " does not exist");
    candidates.push_back(explicit_path);
  } else {
    candidates.push_back("genie.yaml");
    if (const char* e = std::getenv("GENIE_CONFIG"); e && *e) candidates.push_back(e);
    if (const char* home = std::getenv("HOME"); home && *home)
      candidates.push_back(std::string(home) + "/.config/genie/genie.yaml");
  }
  Config config;
  for (const auto& c : candidates) {
    if (!fs::exists(c)) continue;
    config.path = c;
    break;
  }
  if (config.path.empty()) return config;
  const std::string& path = config.path;
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root || root.IsNull()) return config;
    if (!root.IsMap()) return Status::InvalidArgument(Where(path, root) + ": the top level must be a mapping");
    if (root["store"]) config.store = root["store"].as<std::string>();
    if (YAML::Node pats = root["patterns"]) {
      if (!pats.IsSequence()) return Status::InvalidArgument(Where(path, pats) + ": 'patterns' must be a list of files");
      for (const auto& f : pats) {
        fs::path file = f.as<std::string>();
        if (file.is_relative()) file = fs::absolute(path).parent_path() / file;
        config.patterns.push_back(file.string());
      }
    }
    YAML::Node pools = root["pools"];
    if (!pools) return config;
    if (!pools.IsMap()) return Status::InvalidArgument(Where(path, pools) + ": 'pools' must map names to pools");
    for (const auto& kv : pools) {
      Pool pool;
      pool.name = kv.first.as<std::string>();
      const YAML::Node& p = kv.second;
      if (!p.IsMap() || !p["runtimes"] || !p["runtimes"].IsSequence())
        return Status::InvalidArgument(Where(path, p) + ": pool '" + pool.name + "' needs a 'runtimes' list");
      for (const auto& r : p["runtimes"]) {
        if (!r.IsMap() || !r["address"])
          return Status::InvalidArgument(Where(path, r) + ": each runtime needs an 'address'");
        RuntimeEndpoint e;
        e.address = r["address"].as<std::string>();
        // The address says which: HOST:PORT is tcp, unix:PATH or unix:@NAME a unix socket on this host.
        std::string implied = transport::IsUnixAddress(e.address) ? "unix" : "tcp";
        e.transport = r["transport"] ? r["transport"].as<std::string>() : implied;
        if (e.transport != "tcp" && e.transport != "unix")
          return Status::InvalidArgument(Where(path, r) + ": transport '" + e.transport +
                                         "' is not available (tcp, unix)");
        if (e.transport != implied)
          return Status::InvalidArgument(Where(path, r) + ": address '" + e.address + "' is not a " + e.transport +
                                         " address (" + (e.transport == "tcp" ? "HOST:PORT" : "unix:PATH or unix:@NAME") +
                                         ")");
        if (r["token_file"]) e.token_file = r["token_file"].as<std::string>();
        if (YAML::Node d = r["devices"]) {
          if (!d.IsSequence() || d.size() == 0)
            return Status::InvalidArgument(Where(path, d) + ": 'devices' must be a non-empty list like [cuda:0, cuda:1]");
          e.devices.clear();
          for (const auto& dev : d) e.devices.push_back(dev.as<std::string>());
        }
        pool.runtimes.push_back(e);
      }
      if (pool.runtimes.empty()) return Status::InvalidArgument(Where(path, p) + ": pool '" + pool.name + "' has no runtimes");
      if (p["backup"]) pool.backup = p["backup"].as<std::string>();
      config.pools[pool.name] = pool;
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return config;
}

Result<Pool> FindPool(const Config& config, const std::string& name) {
  auto it = config.pools.find(name);
  if (it != config.pools.end()) return it->second;
  std::string known;
  for (const auto& [n, p] : config.pools) known += (known.empty() ? "" : ", ") + n;
  std::string where = config.path.empty() ? "no genie.yaml was found" : "pools in " + config.path + ": " + (known.empty() ? "none" : known);
  return Status::NotFound("unknown pool '" + name + "' (" + where + "; `--pool local` needs none)");
}

}  // namespace genie::replayer

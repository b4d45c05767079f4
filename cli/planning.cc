#include "cli/planning.h"

namespace genie::cli {

Result<planner::PoolShape> PoolShapeFor(const replayer::Config& config, const std::string& pool,
                                        const std::string& local_device) {
  planner::PoolShape shape;
  shape.name = pool;
  if (pool == "local") {
    shape.runtimes.push_back({"loopback", {local_device}});
    return shape;
  }
  GENIE_ASSIGN_OR_RETURN(replayer::Pool p, replayer::FindPool(config, pool));
  for (const auto& r : p.runtimes) shape.runtimes.push_back({r.address, r.devices});
  return shape;
}

Result<analyzer::PatternLibrary> LibraryFor(const replayer::Config& config, const std::vector<std::string>& extra) {
  std::vector<std::string> files = config.patterns;
  files.insert(files.end(), extra.begin(), extra.end());
  return analyzer::PatternLibrary::WithFiles(files);
}

Result<analyzer::WorkloadClass> PatternOption(const std::string& value) {
  if (value == "auto") return analyzer::WorkloadClass::kNone;
  auto c = analyzer::WorkloadClassFromName(value);
  if (!c.ok() || c.value() == analyzer::WorkloadClass::kNone)
    return Status::InvalidArgument("--pattern " + value + ": expected auto, llm, vision, recsys, multimodal or dense");
  return c;
}

Result<std::unique_ptr<planner::PlanStore>> OpenStore(const replayer::Config& config, const std::string& explicit_path) {
  return planner::PlanStore::Open(planner::ResolveStorePath(explicit_path, config.store));
}

}  // namespace genie::cli

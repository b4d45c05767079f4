// What `genie plan`, `genie plans` and `genie run` share: the pool's shape,
// the pattern library, the --pattern option and the plan store.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "analyzer/pattern_library.h"
#include "planner/execution_plan.h"
#include "planner/plan_store.h"
#include "replayer/pool_config.h"

namespace genie::cli {

// `local`: one loopback runtime with `local_device`; otherwise the named pool of the configuration.
Result<planner::PoolShape> PoolShapeFor(const replayer::Config& config, const std::string& pool,
                                        const std::string& local_device);
// The built-in patterns, genie.yaml's pattern files, then `extra`.
Result<analyzer::PatternLibrary> LibraryFor(const replayer::Config& config, const std::vector<std::string>& extra);
// --pattern: "auto" is kNone (the analysis decides).
Result<analyzer::WorkloadClass> PatternOption(const std::string& value);
// The store of --store, $GENIE_STORE, genie.yaml or the default.
Result<std::unique_ptr<planner::PlanStore>> OpenStore(const replayer::Config& config, const std::string& explicit_path);

constexpr const char* kPatternHelp =
    "Workload class to plan for: auto (the analysis decides), llm, vision, recsys, multimodal or dense";

}  // namespace genie::cli

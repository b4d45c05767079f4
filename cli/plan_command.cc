#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/planning.h"
#include "common/json_writer.h"
#include "planner/plan_lookup.h"
#include "traces/trace_paths.h"

namespace genie::cli {
namespace {

struct PlanArgs {
  std::string trace;
  std::string pattern = "auto";
  std::string pool = "local";
  std::string device = "cpu";
  std::string store;
  std::string config;
  std::vector<std::string> patterns;
  bool json = false;
  // plans
  std::string id;
  double older_than_days = 30;
};

int Plan(const PlanArgs& a) {
  auto resolved = traces::TraceOrNewest(a.trace);
  if (!resolved.ok()) return Fail(resolved.status().message());
  const std::string& trace = resolved.value();
  auto klass = PatternOption(a.pattern);
  if (!klass.ok()) return Fail(klass.status().message());
  auto config = replayer::LoadConfig(a.config);
  if (!config.ok()) return Fail(config.status().message());
  auto pool = PoolShapeFor(config.value(), a.pool, a.device);
  if (!pool.ok()) return Fail(pool.status().message());
  auto library = LibraryFor(config.value(), a.patterns);
  if (!library.ok()) return Fail(library.status().message());
  auto store = OpenStore(config.value(), a.store);
  if (!store.ok()) return Fail(store.status().message());
  auto choice = planner::FindOrMakePlan(*store.value(), trace, pool.value(), library.value(), klass.value(), true);
  if (!choice.ok()) return Fail(choice.status().message());
  const planner::ExecutionPlan& plan = choice.value().plan;
  if (a.json) {
    std::cout << planner::PlanJson(plan) << "\n";
  } else {
    std::cout << planner::PlanText(plan);
    std::cout << "stored in " << store.value()->path();
    if (!choice.value().replaced.empty()) std::cout << " (replacing plan " << choice.value().replaced << ")";
    std::cout << "\n";
  }
  return 0;
}

// The store of --store / --config, for the `genie plans` subcommands.
Result<std::unique_ptr<planner::PlanStore>> StoreOf(const PlanArgs& a) {
  GENIE_ASSIGN_OR_RETURN(replayer::Config config, replayer::LoadConfig(a.config));
  return OpenStore(config, a.store);
}

int List(const PlanArgs& a) {
  auto store = StoreOf(a);
  if (!store.ok()) return Fail(store.status().message());
  auto plans = store.value()->List();
  if (!plans.ok()) return Fail(plans.status().message());
  if (a.json) {
    JsonWriter w;
    w.BeginArray();
    for (const auto& p : plans.value())
      w.BeginObject().Key("id").String(p.id).Key("pool").String(p.pool).Key("class").String(p.klass)
          .Key("trace").String(p.trace_path).Key("created").String(p.created).Key("last_used").String(p.last_used)
          .Key("uses").Uint(p.uses).Key("fragments").Uint(p.fragments).EndObject();
    w.EndArray();
    std::cout << w.str() << "\n";
    return 0;
  }
  if (plans.value().empty()) {
    std::cout << "no plans in " << store.value()->path() << "\n";
    return 0;
  }
  std::printf("%-36s  %-12s  %-10s  %-20s  %4s  %s\n", "id", "pool", "class", "created", "runs", "trace");
  for (const auto& p : plans.value())
    std::printf("%-36s  %-12s  %-10s  %-20s  %4llu  %s\n", p.id.c_str(), p.pool.c_str(), p.klass.c_str(), p.created.c_str(),
                static_cast<unsigned long long>(p.uses), p.trace_path.c_str());
  return 0;
}

int Show(const PlanArgs& a) {
  auto store = StoreOf(a);
  if (!store.ok()) return Fail(store.status().message());
  auto plan = store.value()->Get(a.id);
  if (!plan.ok()) return Fail(plan.status().message());
  std::cout << (a.json ? planner::PlanJson(plan.value()) + "\n" : planner::PlanText(plan.value()));
  return 0;
}

int Remove(const PlanArgs& a) {
  auto store = StoreOf(a);
  if (!store.ok()) return Fail(store.status().message());
  auto removed = store.value()->Remove(a.id);
  if (!removed.ok()) return Fail(removed.status().message());
  std::cout << "removed plan " << removed.value() << "\n";
  return 0;
}

int Gc(const PlanArgs& a) {
  auto store = StoreOf(a);
  if (!store.ok()) return Fail(store.status().message());
  auto report = store.value()->Gc(a.older_than_days);
  if (!report.ok()) return Fail(report.status().message());
  std::cout << "removed " << report.value().plans_removed << " plans unused for " << a.older_than_days << " days and "
            << report.value().index_rows_removed << " index entries of missing traces\n";
  return 0;
}

void StoreOptions(CLI::App* cmd, PlanArgs* args) {
  cmd->add_option("--store", args->store,
                  "Plan store (default: $GENIE_STORE, genie.yaml's `store:`, ~/.local/share/genie/plans.db)");
  cmd->add_option("--config", args->config, "genie.yaml to read (default: ./genie.yaml, $GENIE_CONFIG, ~/.config/genie/)");
}

}  // namespace

void AddPlanCommands(CLI::App& app, Action* action) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* plan = app.add_subcommand(
      "plan", "Analyze a trace and store an ExecutionPlan for it on a pool: fragments and their placement, what stays "
              "resident, the transfer schedule, feature flags");
  plan->add_option("trace", args->trace, "Trace file (default: the newest under ./traces/)");
  plan->add_option("--pattern", args->pattern, kPatternHelp)->capture_default_str();
  plan->add_option("--pool", args->pool, "Pool to plan for: `local` or a pool of genie.yaml")->capture_default_str();
  plan->add_option("--device", args->device, "Device of the `local` pool's runtime")->capture_default_str();
  plan->add_option("--patterns", args->patterns, "A YAML pattern file to add to the built-in library (repeatable)")->allow_extra_args(false);
  plan->add_flag("--json", args->json, "Print the plan as JSON");
  StoreOptions(plan, args.get());
  plan->callback([args, action] { *action = [args] { return Plan(*args); }; });

  CLI::App* plans = app.add_subcommand("plans", "The plan store: list, show, rm, gc");
  plans->require_subcommand(1);
  CLI::App* list = plans->add_subcommand("list", "List stored plans");
  list->add_flag("--json", args->json, "Print JSON");
  StoreOptions(list, args.get());
  list->callback([args, action] { *action = [args] { return List(*args); }; });
  CLI::App* show = plans->add_subcommand("show", "Show a stored plan");
  show->add_option("id", args->id, "Plan id, or a unique prefix of at least 4 characters")->required();
  show->add_flag("--json", args->json, "Print JSON");
  StoreOptions(show, args.get());
  show->callback([args, action] { *action = [args] { return Show(*args); }; });
  CLI::App* rm = plans->add_subcommand("rm", "Remove a stored plan");
  rm->add_option("id", args->id, "Plan id, or a unique prefix of at least 4 characters")->required();
  StoreOptions(rm, args.get());
  rm->callback([args, action] { *action = [args] { return Remove(*args); }; });
  CLI::App* gc = plans->add_subcommand("gc", "Remove plans unused for a while and index entries of deleted traces");
  gc->add_option("--older-than", args->older_than_days, "Days without a run (or since creation, if never run)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  StoreOptions(gc, args.get());
  gc->callback([args, action] { *action = [args] { return Gc(*args); }; });
}

}  // namespace genie::cli

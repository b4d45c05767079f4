#include <sqlite3.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>

#include "planner/plan_store.h"
#include "tests/catch.h"
#include "tests/temp_dir.h"

using namespace genie;
using namespace genie::planner;

namespace {

analyzer::Analysis LlmAnalysis(uint64_t fingerprint_base) {
  analyzer::Analysis a;
  a.path = "gpt.gtrace";
  a.klass = analyzer::WorkloadClass::kLlm;
  a.confidence = 0.9;
  a.parameters = 10;
  a.parameter_bytes = 3u << 20;
  a.kv_cache_bytes = 1 << 16;
  a.phase_ops = {{"prefill", 100}, {"decode", 1000}};
  a.fingerprints = {fingerprint_base, fingerprint_base + 1, 0xfedcba9876543210ull};
  a.segment_stats.resize(3);
  return a;
}

PoolShape Pool(const std::string& name) {
  PoolShape p;
  p.name = name;
  p.runtimes.push_back({"10.0.0.5:7070", {"cuda:0", "cuda:1"}});
  return p;
}

void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("a stored plan reads back whole, by id, by prefix and by its trace key and pool") {
  testing::TempDir dir;
  auto store = PlanStore::Open(dir.File("sub/plans.db"));
  REQUIRE(store.ok());
  auto plan = MakePlan(LlmAnalysis(7), Pool("gpu"), analyzer::WorkloadClass::kNone);
  REQUIRE(plan.ok());
  REQUIRE(plan.value().feature_flags.at("cuda_graphs") == "decode");
  REQUIRE(store.value()->Put(plan.value()).ok());
  auto back = store.value()->Get(plan.value().id.substr(0, 8));
  REQUIRE(back.ok());
  REQUIRE(PlanJson(back.value()) == PlanJson(plan.value()));
  auto found = store.value()->Find(plan.value().trace_key, "gpu");
  REQUIRE(found.ok());
  REQUIRE(found.value().has_value());
  REQUIRE(found.value()->id == plan.value().id);
  auto other_pool = store.value()->Find(plan.value().trace_key, "cpu-pool");
  REQUIRE(other_pool.ok());
  REQUIRE_FALSE(other_pool.value().has_value());
}

TEST_CASE("planning a trace again for the same pool replaces its plan; rm and gc remove plans") {
  testing::TempDir dir;
  auto store = PlanStore::Open(dir.File("plans.db"));
  REQUIRE(store.ok());
  auto first = MakePlan(LlmAnalysis(7), Pool("gpu"), analyzer::WorkloadClass::kNone).value();
  auto second = MakePlan(LlmAnalysis(7), Pool("gpu"), analyzer::WorkloadClass::kNone).value();
  auto other = MakePlan(LlmAnalysis(100), Pool("gpu"), analyzer::WorkloadClass::kNone).value();
  REQUIRE(store.value()->Put(first).ok());
  std::string replaced;
  REQUIRE(store.value()->Put(second, &replaced).ok());
  REQUIRE(replaced == first.id);
  REQUIRE(store.value()->Put(other).ok());
  REQUIRE(store.value()->List().value().size() == 2);
  REQUIRE(store.value()->Get(first.id).status().code() == Status::Code::kNotFound);
  REQUIRE(store.value()->Remove(other.id).ok());
  REQUIRE(store.value()->List().value().size() == 1);
  // Unused plans younger than the limit stay; a zero limit collects them.
  REQUIRE(store.value()->Gc(30).value().plans_removed == 0);
  REQUIRE(store.value()->MarkUsed(second.id).ok());
  REQUIRE(store.value()->Get(second.id).value().uses == 1);
  RawExec(dir.File("plans.db"), "UPDATE plans SET last_used = '2020-01-01T00:00:00Z'");
  REQUIRE(store.value()->Gc(30).value().plans_removed == 1);
  REQUIRE(store.value()->List().value().empty());
}

TEST_CASE("a store with the first schema version is migrated and keeps its plans") {
  testing::TempDir dir;
  std::string path = dir.File("old.db");
  // Version 1 as an earlier genie wrote it.
  RawExec(path, R"sql(
PRAGMA application_id = 1195724361;
CREATE TABLE plans (id TEXT PRIMARY KEY, trace_key TEXT NOT NULL, pool TEXT NOT NULL, class TEXT NOT NULL,
  class_overridden INTEGER NOT NULL, confidence REAL NOT NULL, training INTEGER NOT NULL, strategy TEXT NOT NULL,
  trace_path TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (trace_key, pool));
CREATE TABLE plan_fingerprints (plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  fingerprint INTEGER NOT NULL, PRIMARY KEY (plan_id, fingerprint));
CREATE TABLE fragments (plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  name TEXT NOT NULL, role TEXT NOT NULL, modules TEXT NOT NULL, runtime INTEGER NOT NULL, address TEXT NOT NULL,
  device TEXT NOT NULL, flops REAL NOT NULL, parameter_bytes INTEGER NOT NULL, PRIMARY KEY (plan_id, idx));
CREATE TABLE residency (plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  kind TEXT NOT NULL, what TEXT NOT NULL, bytes INTEGER NOT NULL, fragment INTEGER NOT NULL, PRIMARY KEY (plan_id, idx));
CREATE TABLE transfers (plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  phase TEXT NOT NULL, direction TEXT NOT NULL, bytes INTEGER NOT NULL, tensors INTEGER NOT NULL,
  fragment INTEGER NOT NULL, PRIMARY KEY (plan_id, idx));
CREATE TABLE feature_flags (plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE, name TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY (plan_id, name));
INSERT INTO plans VALUES ('0badc0de-0000-4000-8000-000000000000', 'k', 'gpu', 'vision', 0, 1.0, 0,
  'vision: one device', 't.gtrace', '2026-01-01T00:00:00Z');
INSERT INTO fragments VALUES ('0badc0de-0000-4000-8000-000000000000', 0, 'forward', 'forward', '', 0, 'a:1', 'cuda:0', 1.0, 4);
PRAGMA user_version = 1;
)sql");
  auto store = PlanStore::Open(path);
  REQUIRE(store.ok());
  auto plan = store.value()->Get("0badc0de");
  REQUIRE(plan.ok());
  REQUIRE(plan.value().klass == analyzer::WorkloadClass::kVision);
  REQUIRE(plan.value().uses == 0);
  REQUIRE(plan.value().fragments.size() == 1);
  REQUIRE(store.value()->RememberTraceKey("/t.gtrace", 1, 2, "k").ok());  // the table v2 added
}

TEST_CASE("a file that is not a plan store, or a store newer than this genie, is refused with its path named") {
  testing::TempDir dir;
  std::string junk = dir.File("junk.db");
  std::ofstream(junk) << "this is not a database, not even a little bit; it is text that goes on for a while......";
  auto a = PlanStore::Open(junk);
  REQUIRE_FALSE(a.ok());
  REQUIRE(a.status().message().find(junk) != std::string::npos);
  REQUIRE(a.status().message().find("not an SQLite database") != std::string::npos);
  REQUIRE(ReadFile(junk).rfind("this is not a database", 0) == 0);  // left as it was

  std::string foreign = dir.File("foreign.db");
  RawExec(foreign, "CREATE TABLE customers (name TEXT)");
  auto b = PlanStore::Open(foreign);
  REQUIRE_FALSE(b.ok());
  REQUIRE(b.status().message().find("not a plan store") != std::string::npos);

  std::string newer = dir.File("newer.db");
  REQUIRE(PlanStore::Open(newer).ok());
  RawExec(newer, "PRAGMA user_version = 99");
  auto c = PlanStore::Open(newer);
  REQUIRE_FALSE(c.ok());
  REQUIRE(c.status().message().find("schema version 99 is newer") != std::string::npos);
}

TEST_CASE("the plan store's schema matches the checked-in golden schema") {
  // After an intended schema change (a new migration), regenerate with
  // GENIE_UPDATE_GOLDEN=1 build/tests/planner_test.
  testing::TempDir dir;
  auto store = PlanStore::Open(dir.File("plans.db"));
  REQUIRE(store.ok());
  std::string sql = store.value()->SchemaSql().value();
  std::string golden = std::string(std::getenv("GENIE_SOURCE_DIR") ? std::getenv("GENIE_SOURCE_DIR") : ".") +
                       "/tests/golden/store/schema.sql";
  if (std::getenv("GENIE_UPDATE_GOLDEN")) std::ofstream(golden, std::ios::trunc) << sql;
  REQUIRE(sql == ReadFile(golden));
}

TEST_CASE("plans place LLM decode with its KV cache, recsys tables by size, vision stages across devices") {
  PoolShape pool = Pool("gpu");
  pool.runtimes.push_back({"10.0.0.6:7070", {"cuda:0", "cuda:1"}});
  auto llm = MakePlan(LlmAnalysis(1), pool, analyzer::WorkloadClass::kNone).value();
  uint32_t decode = 99;
  for (const Fragment& f : llm.fragments)
    if (f.role == "decode") decode = f.index;
  REQUIRE(decode != 99);
  bool kv = false;
  for (const Residency& r : llm.residency) kv |= r.kind == "kv_cache" && r.fragment == decode;
  REQUIRE(kv);
  REQUIRE(AverageStartupBatchBytes(llm) >= 1e6);

  analyzer::Analysis rec = LlmAnalysis(2);
  rec.klass = analyzer::WorkloadClass::kRecsys;
  rec.embedding_tables = {{"R.small", 100, {}}, {"R.big", 4000, {}}, {"R.mid", 2000, {}}, {"R.mid2", 1900, {}}};
  auto recsys = MakePlan(rec, pool, analyzer::WorkloadClass::kNone).value();
  REQUIRE(recsys.fragments[0].name == "table R.big");  // largest first
  std::set<std::string> devices;
  for (const Fragment& f : recsys.fragments)
    if (f.role == "table") devices.insert(std::to_string(f.placement.runtime) + f.placement.device);
  REQUIRE(devices.size() == 4);  // four tables, four devices

  analyzer::Analysis vis = LlmAnalysis(3);
  vis.klass = analyzer::WorkloadClass::kVision;
  vis.branches = {{"N.a", 0, 10, 100, 10, "image"}, {"N.b", 1, 10, 100, 10, "image"}, {"N.c", 2, 10, 100, 10, "image"},
                  {"N.d", 3, 10, 100, 10, "image"}};
  auto vision = MakePlan(vis, pool, analyzer::WorkloadClass::kNone).value();
  REQUIRE(vision.fragments.size() == 4);
  REQUIRE(vision.feature_flags.at("pipeline") == "4 stages");
  // --pattern overrides the class.
  auto forced = MakePlan(vis, pool, analyzer::WorkloadClass::kLlm).value();
  REQUIRE(forced.klass == analyzer::WorkloadClass::kLlm);
  REQUIRE(forced.class_overridden);
}

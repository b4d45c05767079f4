#include "planner/plan_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "common/utc_time.h"
#include <thread>

namespace genie::planner {
namespace {

namespace fs = std::filesystem;

constexpr int kApplicationId = 0x47454E49;  // "GENI"
constexpr int kBusyTimeoutMs = 30000;

// Migration i takes the schema from version i to i + 1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE plans (
  id TEXT PRIMARY KEY,
  trace_key TEXT NOT NULL,
  pool TEXT NOT NULL,
  class TEXT NOT NULL,
  class_overridden INTEGER NOT NULL,
  confidence REAL NOT NULL,
  training INTEGER NOT NULL,
  strategy TEXT NOT NULL,
  trace_path TEXT NOT NULL,
  created TEXT NOT NULL,
  UNIQUE (trace_key, pool)
);
CREATE TABLE plan_fingerprints (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  fingerprint INTEGER NOT NULL,
  PRIMARY KEY (plan_id, fingerprint)
);
CREATE TABLE fragments (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  modules TEXT NOT NULL,
  runtime INTEGER NOT NULL,
  address TEXT NOT NULL,
  device TEXT NOT NULL,
  flops REAL NOT NULL,
  parameter_bytes INTEGER NOT NULL,
  PRIMARY KEY (plan_id, idx)
);
CREATE TABLE residency (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  kind TEXT NOT NULL,
  what TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  fragment INTEGER NOT NULL,
  PRIMARY KEY (plan_id, idx)
);
CREATE TABLE transfers (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  phase TEXT NOT NULL,
  direction TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  tensors INTEGER NOT NULL,
  fragment INTEGER NOT NULL,
  PRIMARY KEY (plan_id, idx)
);
CREATE TABLE feature_flags (
  plan_id TEXT NOT NULL REFERENCES plans(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (plan_id, name)
);
)sql",
    R"sql(
ALTER TABLE plans ADD COLUMN last_used TEXT NOT NULL DEFAULT '';
ALTER TABLE plans ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
CREATE TABLE trace_index (
  path TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  trace_key TEXT NOT NULL
);
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kStoreSchemaVersion);

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Real(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return rc_ = sqlite3_step(s_); }
  std::string TextAt(int i) const {
    const unsigned char* t = sqlite3_column_text(s_, i);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  int64_t IntAt(int i) const { return sqlite3_column_int64(s_, i); }
  double RealAt(int i) const { return sqlite3_column_double(s_, i); }
  int rc() const { return rc_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    out.push_back(s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return out;
}

// Runs `fn` (a transaction's body) between BEGIN IMMEDIATE and COMMIT, rolling back on failure.
template <typename Fn>
Status Transaction(sqlite3* db, Fn fn, const std::string& path) {
  char* err = nullptr;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "cannot begin a transaction";
    sqlite3_free(err);
    return Status::IOError(path + ": " + msg);
  }
  Status st = fn();
  if (st.ok() && sqlite3_exec(db, "COMMIT", nullptr, nullptr, &err) != SQLITE_OK) {
    st = Status::IOError(path + ": " + (err ? err : "commit failed"));
    sqlite3_free(err);
  }
  if (!st.ok()) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return st;
}

}  // namespace

std::string ResolveStorePath(const std::string& explicit_path, const std::string& config_store) {
  std::string p = explicit_path;
  if (p.empty() && std::getenv("GENIE_STORE")) p = std::getenv("GENIE_STORE");
  if (p.empty()) p = config_store;
  const char* home = std::getenv("HOME");
  if (p.empty()) p = std::string(home ? home : ".") + "/.local/share/genie/plans.db";
  if (p.rfind("~/", 0) == 0 && home) p = std::string(home) + p.substr(1);
  return p;
}

Result<std::unique_ptr<PlanStore>> PlanStore::Open(const std::string& path) {
  std::error_code ec;
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<PlanStore> store(new PlanStore(path, db));
  if (rc != SQLITE_OK) return store->Error("cannot open the plan store");
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  sqlite3_exec(db, "PRAGMA foreign_keys = ON", nullptr, nullptr, nullptr);
  GENIE_RETURN_IF_ERROR(store->Migrate());
  return store;
}

PlanStore::~PlanStore() { sqlite3_close(db_); }

Status PlanStore::Error(const std::string& what) const {
  int code = sqlite3_errcode(db_);
  if (code == SQLITE_NOTADB)
    return Status::InvalidArgument(path_ + ": not a plan store (the file is not an SQLite database)");
  return Status::IOError(path_ + ": " + what + ": " + sqlite3_errmsg(db_));
}

Status PlanStore::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "";
    sqlite3_free(err);
    if (sqlite3_errcode(db_) == SQLITE_NOTADB) return Error(msg);
    return Status::IOError(path_ + ": " + msg);
  }
  return Status::OK();
}

Status PlanStore::Migrate() {
  // WAL needs a moment alone with the file; another process may hold it while creating the store.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  while (true) {
    Stmt wal(db_, "PRAGMA journal_mode = WAL");
    if (!wal.ok()) return Error("cannot read the plan store");
    int rc = wal.Step();
    if (rc == SQLITE_ROW) break;
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) return Error("cannot read the plan store");
    if (std::chrono::steady_clock::now() > deadline) return Error("the plan store stayed locked");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Transaction(db_, [&]() -> Status {
    Stmt app(db_, "PRAGMA application_id");
    Stmt ver(db_, "PRAGMA user_version");
    if (app.Step() != SQLITE_ROW || ver.Step() != SQLITE_ROW) return Error("cannot read the plan store");
    int64_t app_id = app.IntAt(0), version = ver.IntAt(0);
    Stmt tables(db_, "SELECT count(*) FROM sqlite_master");
    if (tables.Step() != SQLITE_ROW) return Error("cannot read the plan store");
    if (app_id != kApplicationId && (app_id != 0 || tables.IntAt(0) != 0))
      return Status::InvalidArgument(path_ + ": not a plan store (an SQLite database of something else)");
    if (version > kStoreSchemaVersion)
      return Status::Unsupported(path_ + ": plan store schema version " + std::to_string(version) +
                                 " is newer than this genie reads (" + std::to_string(kStoreSchemaVersion) +
                                 "); use a newer genie or another --store");
    if (app_id == 0) GENIE_RETURN_IF_ERROR(Exec("PRAGMA application_id = " + std::to_string(kApplicationId)));
    for (int64_t v = version; v < kStoreSchemaVersion; ++v) {
      GENIE_RETURN_IF_ERROR(Exec(kMigrations[v]));
      GENIE_RETURN_IF_ERROR(Exec("PRAGMA user_version = " + std::to_string(v + 1)));
    }
    return Status::OK();
  }, path_);
}

Status PlanStore::Put(const ExecutionPlan& p, std::string* replaced) {
  return Transaction(db_, [&]() -> Status {
    Stmt old(db_, "SELECT id FROM plans WHERE trace_key = ?1 AND pool = ?2");
    old.Text(1, p.trace_key).Text(2, p.pool);
    if (old.Step() == SQLITE_ROW) {
      std::string id = old.TextAt(0);
      if (replaced) *replaced = id;
      Stmt del(db_, "DELETE FROM plans WHERE id = ?1");
      del.Text(1, id);
      if (del.Step() != SQLITE_DONE) return Error("cannot replace plan " + id);
    } else if (replaced) {
      replaced->clear();
    }
    Stmt ins(db_,
             "INSERT INTO plans (id, trace_key, pool, class, class_overridden, confidence, training, strategy, trace_path, "
             "created, last_used, uses) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    ins.Text(1, p.id).Text(2, p.trace_key).Text(3, p.pool).Text(4, analyzer::WorkloadClassName(p.klass));
    ins.Int(5, p.class_overridden).Real(6, p.confidence).Int(7, p.training).Text(8, p.strategy).Text(9, p.trace_path);
    ins.Text(10, p.created).Text(11, p.last_used).Int(12, static_cast<int64_t>(p.uses));
    if (ins.Step() != SQLITE_DONE) return Error("cannot store plan " + p.id);
    for (uint64_t f : p.fingerprints) {
      Stmt s(db_, "INSERT INTO plan_fingerprints (plan_id, fingerprint) VALUES (?1, ?2)");
      s.Text(1, p.id).Int(2, static_cast<int64_t>(f));
      if (s.Step() != SQLITE_DONE) return Error("cannot store plan " + p.id);
    }
    for (const Fragment& f : p.fragments) {
      std::string modules;
      for (const auto& m : f.modules) modules += (modules.empty() ? "" : "\n") + m;
      Stmt s(db_,
             "INSERT INTO fragments (plan_id, idx, name, role, modules, runtime, address, device, flops, parameter_bytes) "
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
      s.Text(1, p.id).Int(2, f.index).Text(3, f.name).Text(4, f.role).Text(5, modules).Int(6, f.placement.runtime);
      s.Text(7, f.placement.address).Text(8, f.placement.device).Real(9, f.flops).Int(10, static_cast<int64_t>(f.parameter_bytes));
      if (s.Step() != SQLITE_DONE) return Error("cannot store plan " + p.id);
    }
    for (size_t i = 0; i < p.residency.size(); ++i) {
      const Residency& r = p.residency[i];
      Stmt s(db_, "INSERT INTO residency (plan_id, idx, kind, what, bytes, fragment) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
      s.Text(1, p.id).Int(2, static_cast<int64_t>(i)).Text(3, r.kind).Text(4, r.what).Int(5, static_cast<int64_t>(r.bytes));
      s.Int(6, r.fragment);
      if (s.Step() != SQLITE_DONE) return Error("cannot store plan " + p.id);
    }
    for (const TransferBatch& t : p.transfers) {
      Stmt s(db_,
             "INSERT INTO transfers (plan_id, idx, phase, direction, bytes, tensors, fragment) "
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
      s.Text(1, p.id).Int(2, t.index).Text(3, t.when).Text(4, t.direction).Int(5, static_cast<int64_t>(t.bytes));
      s.Int(6, static_cast<int64_t>(t.tensors)).Int(7, t.fragment);
      if (s.Step() != SQLITE_DONE) return Error("cannot store plan " + p.id);
    }
    for (const auto& [k, v] : p.feature_flags) {
      Stmt s(db_, "INSERT INTO feature_flags (plan_id, name, value) VALUES (?1, ?2, ?3)");
      s.Text(1, p.id).Text(2, k).Text(3, v);
      if (s.Step() != SQLITE_DONE) return Error("cannot store plan " + p.id);
    }
    return Status::OK();
  }, path_);
}

Result<ExecutionPlan> PlanStore::Load(const std::string& id) {
  ExecutionPlan p;
  Stmt s(db_,
         "SELECT id, trace_key, pool, class, class_overridden, confidence, training, strategy, trace_path, created, "
         "last_used, uses FROM plans WHERE id = ?1");
  s.Text(1, id);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return Status::NotFound(path_ + ": no plan " + id);
  if (rc != SQLITE_ROW) return Error("cannot read plan " + id);
  p.id = s.TextAt(0);
  p.trace_key = s.TextAt(1);
  p.pool = s.TextAt(2);
  auto klass = analyzer::WorkloadClassFromName(s.TextAt(3));
  if (!klass.ok()) return Status::Corruption(path_ + ": plan " + id + ": " + klass.status().message());
  p.klass = klass.value();
  p.class_overridden = s.IntAt(4) != 0;
  p.confidence = s.RealAt(5);
  p.training = s.IntAt(6) != 0;
  p.strategy = s.TextAt(7);
  p.trace_path = s.TextAt(8);
  p.created = s.TextAt(9);
  p.last_used = s.TextAt(10);
  p.uses = static_cast<uint64_t>(s.IntAt(11));
  Stmt fp(db_, "SELECT fingerprint FROM plan_fingerprints WHERE plan_id = ?1 ORDER BY fingerprint");
  fp.Text(1, id);
  while (fp.Step() == SQLITE_ROW) p.fingerprints.push_back(static_cast<uint64_t>(fp.IntAt(0)));
  std::sort(p.fingerprints.begin(), p.fingerprints.end());
  Stmt fr(db_,
          "SELECT idx, name, role, modules, runtime, address, device, flops, parameter_bytes FROM fragments "
          "WHERE plan_id = ?1 ORDER BY idx");
  fr.Text(1, id);
  while (fr.Step() == SQLITE_ROW) {
    Fragment f;
    f.index = static_cast<uint32_t>(fr.IntAt(0));
    f.name = fr.TextAt(1);
    f.role = fr.TextAt(2);
    f.modules = SplitLines(fr.TextAt(3));
    f.placement = {static_cast<uint32_t>(fr.IntAt(4)), fr.TextAt(5), fr.TextAt(6)};
    f.flops = fr.RealAt(7);
    f.parameter_bytes = static_cast<uint64_t>(fr.IntAt(8));
    p.fragments.push_back(f);
  }
  Stmt rs(db_, "SELECT kind, what, bytes, fragment FROM residency WHERE plan_id = ?1 ORDER BY idx");
  rs.Text(1, id);
  while (rs.Step() == SQLITE_ROW)
    p.residency.push_back({rs.TextAt(0), rs.TextAt(1), static_cast<uint64_t>(rs.IntAt(2)), static_cast<uint32_t>(rs.IntAt(3))});
  Stmt tr(db_, "SELECT idx, phase, direction, bytes, tensors, fragment FROM transfers WHERE plan_id = ?1 ORDER BY idx");
  tr.Text(1, id);
  while (tr.Step() == SQLITE_ROW)
    p.transfers.push_back({static_cast<uint32_t>(tr.IntAt(0)), tr.TextAt(1), tr.TextAt(2), static_cast<uint64_t>(tr.IntAt(3)),
                           static_cast<uint64_t>(tr.IntAt(4)), static_cast<uint32_t>(tr.IntAt(5))});
  Stmt fl(db_, "SELECT name, value FROM feature_flags WHERE plan_id = ?1 ORDER BY name");
  fl.Text(1, id);
  while (fl.Step() == SQLITE_ROW) p.feature_flags[fl.TextAt(0)] = fl.TextAt(1);
  return p;
}

Result<std::optional<ExecutionPlan>> PlanStore::Find(const std::string& trace_key, const std::string& pool) {
  Stmt s(db_, "SELECT id FROM plans WHERE trace_key = ?1 AND pool = ?2");
  s.Text(1, trace_key).Text(2, pool);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<ExecutionPlan>();
  if (rc != SQLITE_ROW) return Error("cannot look up a plan");
  GENIE_ASSIGN_OR_RETURN(ExecutionPlan p, Load(s.TextAt(0)));
  return std::optional<ExecutionPlan>(std::move(p));
}

Result<std::optional<ExecutionPlan>> PlanStore::FindCovering(uint64_t fingerprint, const std::string& pool) {
  Stmt s(db_,
         "SELECT p.id FROM plans p JOIN plan_fingerprints f ON f.plan_id = p.id "
         "WHERE f.fingerprint = ?1 AND p.pool = ?2 ORDER BY p.created DESC, p.id LIMIT 1");
  s.Int(1, static_cast<int64_t>(fingerprint)).Text(2, pool);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<ExecutionPlan>();
  if (rc != SQLITE_ROW) return Error("cannot look up a plan");
  GENIE_ASSIGN_OR_RETURN(ExecutionPlan p, Load(s.TextAt(0)));
  return std::optional<ExecutionPlan>(std::move(p));
}

Result<ExecutionPlan> PlanStore::Get(const std::string& id) {
  if (id.size() < 4) return Status::InvalidArgument("plan id '" + id + "' is too short (give at least 4 characters)");
  Stmt s(db_, "SELECT id FROM plans WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2");
  s.Text(1, id);
  std::vector<std::string> ids;
  while (s.Step() == SQLITE_ROW) ids.push_back(s.TextAt(0));
  if (ids.empty()) return Status::NotFound(path_ + ": no plan " + id + " (`genie plans list` shows them)");
  if (ids.size() > 1) return Status::InvalidArgument(path_ + ": plan id prefix '" + id + "' is ambiguous");
  return Load(ids[0]);
}

Result<std::vector<PlanSummary>> PlanStore::List() {
  std::vector<PlanSummary> out;
  Stmt s(db_,
         "SELECT p.id, p.pool, p.class, p.trace_path, p.created, p.last_used, p.uses, "
         "(SELECT count(*) FROM fragments f WHERE f.plan_id = p.id) FROM plans p ORDER BY p.created, p.id");
  while (s.Step() == SQLITE_ROW)
    out.push_back({s.TextAt(0), s.TextAt(1), s.TextAt(2), s.TextAt(3), s.TextAt(4), s.TextAt(5),
                   static_cast<uint64_t>(s.IntAt(6)), static_cast<uint64_t>(s.IntAt(7))});
  if (s.rc() != SQLITE_DONE) return Error("cannot list plans");
  return out;
}

Result<std::string> PlanStore::Remove(const std::string& id) {
  GENIE_ASSIGN_OR_RETURN(ExecutionPlan p, Get(id));
  GENIE_RETURN_IF_ERROR(Transaction(db_, [&]() -> Status {
    Stmt s(db_, "DELETE FROM plans WHERE id = ?1");
    s.Text(1, p.id);
    if (s.Step() != SQLITE_DONE) return Error("cannot remove plan " + p.id);
    return Status::OK();
  }, path_));
  return p.id;
}

Status PlanStore::MarkUsed(const std::string& id) {
  return Transaction(db_, [&]() -> Status {
    Stmt s(db_, "UPDATE plans SET last_used = ?1, uses = uses + 1 WHERE id = ?2");
    s.Text(1, UtcNow()).Text(2, id);
    if (s.Step() != SQLITE_DONE) return Error("cannot record the use of plan " + id);
    return Status::OK();
  }, path_);
}

Result<GcReport> PlanStore::Gc(double days) {
  GcReport report;
  std::string cutoff = UtcTimestamp(std::time(nullptr) - static_cast<std::time_t>(days * 86400));
  std::vector<std::string> stale;
  {
    Stmt s(db_, "SELECT path FROM trace_index");
    while (s.Step() == SQLITE_ROW) {
      std::error_code ec;
      if (!fs::exists(s.TextAt(0), ec)) stale.push_back(s.TextAt(0));
    }
  }
  GENIE_RETURN_IF_ERROR(Transaction(db_, [&]() -> Status {
    Stmt s(db_, "DELETE FROM plans WHERE (CASE WHEN last_used = '' THEN created ELSE last_used END) < ?1");
    s.Text(1, cutoff);
    if (s.Step() != SQLITE_DONE) return Error("cannot collect plans");
    report.plans_removed = static_cast<uint64_t>(sqlite3_changes(db_));
    for (const std::string& path : stale) {
      Stmt d(db_, "DELETE FROM trace_index WHERE path = ?1");
      d.Text(1, path);
      if (d.Step() != SQLITE_DONE) return Error("cannot collect the trace index");
      report.index_rows_removed += static_cast<uint64_t>(sqlite3_changes(db_));
    }
    return Status::OK();
  }, path_));
  GENIE_RETURN_IF_ERROR(Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  return report;
}

Result<std::optional<std::string>> PlanStore::CachedTraceKey(const std::string& path, uint64_t size, int64_t mtime_ns) {
  Stmt s(db_, "SELECT trace_key FROM trace_index WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3");
  s.Text(1, path).Int(2, static_cast<int64_t>(size)).Int(3, mtime_ns);
  int rc = s.Step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(s.TextAt(0));
  if (rc != SQLITE_DONE) return Error("cannot read the trace index");
  return std::optional<std::string>();
}

Status PlanStore::RememberTraceKey(const std::string& path, uint64_t size, int64_t mtime_ns, const std::string& key) {
  return Transaction(db_, [&]() -> Status {
    Stmt s(db_, "INSERT OR REPLACE INTO trace_index (path, size, mtime_ns, trace_key) VALUES (?1, ?2, ?3, ?4)");
    s.Text(1, path).Int(2, static_cast<int64_t>(size)).Int(3, mtime_ns).Text(4, key);
    if (s.Step() != SQLITE_DONE) return Error("cannot write the trace index");
    return Status::OK();
  }, path_);
}

Result<std::string> PlanStore::SchemaSql() {
  std::string out = "-- application_id " + std::to_string(kApplicationId) + ", user_version " +
                    std::to_string(kStoreSchemaVersion) + "\n";
  Stmt s(db_, "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name");
  while (s.Step() == SQLITE_ROW) out += s.TextAt(0) + ";\n";
  if (s.rc() != SQLITE_DONE) return Error("cannot read the schema");
  return out;
}

}  // namespace genie::planner

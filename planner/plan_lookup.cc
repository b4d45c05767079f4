#include "planner/plan_lookup.h"

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <set>

#include "traces/trace_reader.h"

namespace genie::planner {
namespace {

struct FileStamp {
  std::string path;  // absolute
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

Result<FileStamp> Stamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound(path + ": no such trace");
  std::error_code ec;
  FileStamp s;
  s.path = std::filesystem::absolute(path, ec).lexically_normal().string();
  s.size = static_cast<uint64_t>(st.st_size);
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return s;
}

}  // namespace

Result<std::string> TraceKeyOf(PlanStore& store, const std::string& path) {
  GENIE_ASSIGN_OR_RETURN(FileStamp stamp, Stamp(path));
  GENIE_ASSIGN_OR_RETURN(auto cached, store.CachedTraceKey(stamp.path, stamp.size, stamp.mtime_ns));
  if (cached) return *cached;
  GENIE_ASSIGN_OR_RETURN(auto reader, traces::TraceReader::Open(path));
  std::set<uint64_t> fingerprints;
  traces::Segment seg;
  while (true) {
    GENIE_ASSIGN_OR_RETURN(bool more, reader->Next(&seg));
    if (!more) break;
    fingerprints.insert(seg.fingerprint);
  }
  std::string key = TraceKey({fingerprints.begin(), fingerprints.end()});
  GENIE_RETURN_IF_ERROR(store.RememberTraceKey(stamp.path, stamp.size, stamp.mtime_ns, key));
  return key;
}

Result<PlanChoice> FindOrMakePlan(PlanStore& store, const std::string& trace_path, const PoolShape& pool,
                                  const analyzer::PatternLibrary& library, analyzer::WorkloadClass klass, bool replan) {
  PlanChoice choice;
  // The stored plan for `key`, if it is one this call may use.
  auto usable = [&](const std::string& key) -> Result<bool> {
    GENIE_ASSIGN_OR_RETURN(auto found, store.Find(key, pool.name));
    if (!found || (klass != analyzer::WorkloadClass::kNone && found->klass != klass)) return false;
    choice.plan = std::move(*found);
    choice.from_store = true;
    return true;
  };
  GENIE_ASSIGN_OR_RETURN(FileStamp stamp, Stamp(trace_path));
  std::optional<std::string> cached;
  if (!replan) {
    GENIE_ASSIGN_OR_RETURN(cached, store.CachedTraceKey(stamp.path, stamp.size, stamp.mtime_ns));
    if (cached) {
      GENIE_ASSIGN_OR_RETURN(bool found, usable(*cached));
      if (found) return choice;
    }
  }
  // One pass over an unseen trace: the analysis yields its key as well.
  GENIE_ASSIGN_OR_RETURN(analyzer::Analysis analysis, analyzer::AnalyzeTrace(trace_path, library));
  const std::string key = TraceKey(analysis.fingerprints);
  if (!cached) GENIE_RETURN_IF_ERROR(store.RememberTraceKey(stamp.path, stamp.size, stamp.mtime_ns, key));
  if (!replan && !cached) {
    GENIE_ASSIGN_OR_RETURN(bool found, usable(key));
    if (found) return choice;
  }
  GENIE_ASSIGN_OR_RETURN(choice.plan, MakePlan(analysis, pool, klass));
  choice.plan.trace_path = stamp.path;
  GENIE_RETURN_IF_ERROR(store.Put(choice.plan, &choice.replaced));
  return choice;
}

}  // namespace genie::planner

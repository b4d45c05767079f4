#include "planner/plan_lookup.h"

#include <sys/stat.h>

#include <filesystem>
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
  if (!replan) {
    GENIE_ASSIGN_OR_RETURN(std::string key, TraceKeyOf(store, trace_path));
    GENIE_ASSIGN_OR_RETURN(auto found, store.Find(key, pool.name));
    if (found && (klass == analyzer::WorkloadClass::kNone || found->klass == klass)) {
      choice.plan = std::move(*found);
      choice.from_store = true;
      return choice;
    }
  }
  GENIE_ASSIGN_OR_RETURN(analyzer::Analysis analysis, analyzer::AnalyzeTrace(trace_path, library));
  GENIE_ASSIGN_OR_RETURN(choice.plan, MakePlan(analysis, pool, klass));
  GENIE_ASSIGN_OR_RETURN(FileStamp stamp, Stamp(trace_path));
  choice.plan.trace_path = stamp.path;
  GENIE_RETURN_IF_ERROR(store.RememberTraceKey(stamp.path, stamp.size, stamp.mtime_ns, choice.plan.trace_key));
  GENIE_RETURN_IF_ERROR(store.Put(choice.plan, &choice.replaced));
  return choice;
}

}  // namespace genie::planner

#include "traces/prefetching_reader.h"

namespace genie::traces {

Result<std::unique_ptr<PrefetchingReader>> PrefetchingReader::Open(const std::string& path, size_t depth) {
  GENIE_ASSIGN_OR_RETURN(auto reader, TraceReader::Open(path));
  return std::unique_ptr<PrefetchingReader>(new PrefetchingReader(std::move(reader), depth));
}

PrefetchingReader::PrefetchingReader(std::unique_ptr<TraceReader> reader, size_t depth)
    : reader_(std::move(reader)), depth_(depth ? depth : 1), header_(reader_->header()) {
  thread_ = std::thread([this] { Produce(); });
}

PrefetchingReader::~PrefetchingReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void PrefetchingReader::Produce() {
  size_t strings_sent = 0;
  while (true) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
      if (stop_) return;
      if (!spare_.empty()) {
        item.seg = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    Result<bool> more = reader_->Next(&item.seg);
    std::lock_guard<std::mutex> lock(mu_);
    if (!more.ok() || !more.value()) {
      if (!more.ok()) error_ = more.status();
      else produced_footer_ = reader_->footer();
      done_ = true;
      changed_.notify_all();
      return;
    }
    const auto& all = reader_->strings().all();
    item.new_strings.assign(all.begin() + static_cast<std::ptrdiff_t>(strings_sent), all.end());
    strings_sent = all.size();
    ready_.push_back(std::move(item));
    changed_.notify_all();
  }
}

Result<bool> PrefetchingReader::Next(Segment* seg) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] { return !ready_.empty() || done_; });
  if (ready_.empty()) {
    if (!error_.ok()) return error_;
    footer_ = produced_footer_;
    return false;
  }
  Item item = std::move(ready_.front());
  ready_.pop_front();
  std::swap(*seg, item.seg);
  spare_.push_back(std::move(item.seg));
  lock.unlock();
  changed_.notify_all();
  for (const std::string& s : item.new_strings) strings_.Intern(s);
  return true;
}

}  // namespace genie::traces

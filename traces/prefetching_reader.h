// Reads a trace's segments on a background thread, up to `depth` ahead of
// the consumer, so decoding overlaps the consumer's work (genie analyze,
// genie diff). Same results and errors as TraceReader, in the same order.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "traces/trace_reader.h"

namespace genie::traces {

class PrefetchingReader {
 public:
  static Result<std::unique_ptr<PrefetchingReader>> Open(const std::string& path, size_t depth = 8);
  ~PrefetchingReader();  // stops the thread, even mid-trace

  // The next segment, swapped into *seg; false after the last; or the error
  // the reader met (after every segment before it was returned).
  Result<bool> Next(Segment* seg);

  // The strings of every segment returned so far (a copy the consumer owns).
  const StringTable& strings() const { return strings_; }
  const TraceHeader& header() const { return header_; }
  // Set once Next has returned false.
  const std::optional<TraceFooter>& footer() const { return footer_; }

 private:
  struct Item {
    Segment seg;
    std::vector<std::string> new_strings;  // interned since the previous item
  };
  PrefetchingReader(std::unique_ptr<TraceReader> reader, size_t depth);
  void Produce();

  std::unique_ptr<TraceReader> reader_;
  size_t depth_;
  TraceHeader header_;
  StringTable strings_;
  std::optional<TraceFooter> footer_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Item> ready_;
  std::vector<Segment> spare_;  // returned by the consumer, reused to avoid allocations
  bool done_ = false;           // the producer finished (end or error)
  bool stop_ = false;           // the consumer went away
  Status error_;
  std::optional<TraceFooter> produced_footer_;
  std::thread thread_;
};

}  // namespace genie::traces

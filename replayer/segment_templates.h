// The client's side of segment templates (genie.proto Execute.as_template):
// which segments a runtime session keeps, and how the next segment is best
// sent. A segment whose skeleton (traces/segment_slots.h) the session holds
// goes up as its template's run: the slots that differ from the prediction
// and the payload hashes that changed; any other goes up whole and becomes
// a template, replacing the least recently used one when all are taken.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/content_hash.h"
#include "traces/graph.h"
#include "traces/segment_slots.h"

namespace genie::replayer {

class TemplateTable {
 public:
  explicit TemplateTable(uint32_t capacity) : capacity_(capacity) {}

  struct Plan {
    uint32_t as_template = 0;    // send the segment whole, kept as this template; or
    uint32_t from_template = 0;  // run this template again, with
    std::string slot_diffs;      // its slots' differences from the prediction and
    std::vector<std::pair<uint32_t, ContentHash>> changed;  // its changed payload hashes (index, hash)
    std::string release_diffs;  // and the ids it releases (ReleasePredictor::Encode)
  };

  // How `seg`, releasing `release`, goes up. The table assumes it is sent so:
  // a reply other than success must be followed by Clear().
  Plan Next(const traces::Segment& seg, const std::vector<uint64_t>& release);

  // Forgets every template (after an error reply, or for a new session).
  void Clear();

  // Template `id`'s payload hashes as of its latest run (1 <= id <= the ids Next gave).
  const std::vector<ContentHash>& Hashes(uint32_t id) const { return entries_[id - 1]->hashes; }

 private:
  struct Entry {
    const std::string* skeleton;  // its key in by_skeleton_ (node keys do not move)
    traces::SlotPredictor slots;
    std::vector<ContentHash> hashes;
    traces::ReleasePredictor release;
    uint64_t used = 0;
  };

  uint32_t capacity_;
  uint64_t clock_ = 0;
  std::vector<std::unique_ptr<Entry>> entries_;         // template id - 1
  std::unordered_map<std::string, uint32_t> by_skeleton_;  // skeleton -> template id
  traces::SegmentSlots scratch_;
};

}  // namespace genie::replayer

#include "replayer/segment_templates.h"

namespace genie::replayer {

TemplateTable::Plan TemplateTable::Next(const traces::Segment& seg, const std::vector<uint64_t>& release) {
  traces::Flatten(seg, &scratch_);
  Plan plan;
  auto found = by_skeleton_.find(scratch_.skeleton);
  if (found != by_skeleton_.end()) {
    Entry& e = *entries_[found->second - 1];
    e.used = ++clock_;
    ByteWriter diffs;
    e.slots.Encode(scratch_.ints, &diffs);
    plan.from_template = found->second;
    plan.slot_diffs = std::move(diffs.buffer());
    for (uint32_t i = 0; i < e.hashes.size(); ++i) {
      if (e.hashes[i] == scratch_.hashes[i]) continue;
      e.hashes[i] = scratch_.hashes[i];
      plan.changed.emplace_back(i, scratch_.hashes[i]);
    }
    ByteWriter release_diffs;
    e.release.Encode(release, traces::FirstDefined(seg), &release_diffs);
    plan.release_diffs = std::move(release_diffs.buffer());
    return plan;
  }
  uint32_t id;
  if (entries_.size() < capacity_) {
    entries_.emplace_back();
    id = static_cast<uint32_t>(entries_.size());
  } else {
    id = 1;
    for (uint32_t i = 2; i <= entries_.size(); ++i)
      if (entries_[i - 1]->used < entries_[id - 1]->used) id = i;
    by_skeleton_.erase(*entries_[id - 1]->skeleton);
  }
  auto key = by_skeleton_.emplace(std::move(scratch_.skeleton), id).first;
  entries_[id - 1] = std::make_unique<Entry>(
      Entry{&key->first, traces::SlotPredictor(std::move(scratch_.ints)), std::move(scratch_.hashes),
            traces::ReleasePredictor(release, traces::FirstDefined(seg)), ++clock_});
  plan.as_template = id;
  return plan;
}

void TemplateTable::Clear() {
  entries_.clear();
  by_skeleton_.clear();
}

}  // namespace genie::replayer

// A test helper: the meta of a contiguous tensor.
#pragma once

#include <vector>

#include "traces/graph.h"

namespace genie::traces::testing {

inline TensorMeta ContiguousMeta(DType d, std::vector<int64_t> sizes, ValueId storage) {
  TensorMeta m;
  m.dtype = d;
  m.sizes = sizes;
  m.strides.resize(sizes.size());
  int64_t s = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    m.strides[i] = s;
    s *= sizes[i];
  }
  m.storage = storage;
  return m;
}

}  // namespace genie::traces::testing

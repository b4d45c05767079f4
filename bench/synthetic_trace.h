// Synthetic traces for benchmarks: a GPT-2-shaped decoder (embeddings, blocks
// of layer norm, attention with a KV cache grown by aten::cat, MLP) recorded
// as a prefill segment and then one decode segment per token, each closed by
// an `.item()` of the next token, until the trace holds at least `min_ops` ops
// (or for `decode_steps` steps).
// The ops, shapes, aliases, module paths and phases are what the capture
// frontend records for such a model; payloads are left out (--payload none).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace genie::bench {

struct SyntheticDecoder {
  int layers = 12;
  int hidden = 768;
  int heads = 12;
  int vocab = 50257;
  int prompt = 16;
  uint64_t min_ops = 1000000;
  uint64_t decode_steps = 0;  // when set, exactly this many decode segments instead of min_ops
};

struct SyntheticStats {
  uint64_t segments = 0;
  uint64_t ops = 0;
};

Result<SyntheticStats> WriteSyntheticDecoderTrace(const std::string& path, const SyntheticDecoder& model);

}  // namespace genie::bench

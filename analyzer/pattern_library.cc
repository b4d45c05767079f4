#include "analyzer/pattern_library.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace genie::analyzer {

const char* const kBuiltinPatterns = R"yaml(
patterns:
  # LLM
  - name: attention
    class: llm
    weight: 2
    modality: text
    kind: chain
    steps:
      - ops: [aten::bmm, aten::mm, aten::matmul, aten::baddbmm]
      - ops: [aten::_softmax, aten::softmax, aten::_safe_softmax]
      - ops: [aten::bmm, aten::mm, aten::matmul]
    via: [aten::view, aten::_unsafe_view, aten::reshape, aten::expand, aten::clone, aten::contiguous,
          aten::div, aten::mul, aten::add, aten::masked_fill, aten::where, aten::native_dropout, aten::dropout,
          aten::transpose, aten::permute, aten::_to_copy, aten::_reshape_alias, aten::as_strided, aten::squeeze,
          aten::unsqueeze, aten::select, aten::slice, aten::alias]
  - name: fused_attention
    class: llm
    weight: 2
    modality: text
    kind: ops
    ops: [aten::scaled_dot_product_attention, aten::_scaled_dot_product_attention_math,
          aten::_scaled_dot_product_flash_attention, aten::_scaled_dot_product_efficient_attention,
          aten::_scaled_dot_product_cudnn_attention, aten::_native_multi_head_attention,
          aten::_transformer_encoder_layer_fwd]
  - name: kv_cache
    class: llm
    weight: 3
    kind: carried
    ops: [aten::cat, aten::index_copy_, aten::index_copy, aten::index_put_, aten::slice_scatter, aten::copy_]
  - name: prefill_phase
    class: llm
    weight: 1
    kind: phase
    phase: prefill
  - name: decode_phase
    class: llm
    weight: 2
    kind: phase
    phase: decode
    min_segments: 2
  - name: token_embedding
    kind: ops
    ops: [aten::embedding]
  # vision
  - name: conv_bn_act
    class: vision
    weight: 3
    modality: image
    kind: chain
    steps:
      - ops: [aten::convolution, aten::_convolution, aten::mkldnn_convolution, aten::cudnn_convolution,
              aten::thnn_conv2d, aten::_slow_conv2d_forward]
      - ops: [aten::native_batch_norm, aten::_native_batch_norm_legit, aten::_native_batch_norm_legit_no_training,
              aten::cudnn_batch_norm, aten::miopen_batch_norm, aten::_batch_norm_impl_index, aten::batch_norm]
      - ops: [aten::relu, aten::relu_, aten::gelu, aten::silu, aten::silu_, aten::hardtanh, aten::hardtanh_,
              aten::hardswish, aten::hardswish_, aten::leaky_relu, aten::leaky_relu_, aten::sigmoid]
    via: [aten::view, aten::reshape]
  - name: conv_act
    class: vision
    weight: 1
    modality: image
    kind: chain
    steps:
      - ops: [aten::convolution, aten::_convolution, aten::mkldnn_convolution, aten::cudnn_convolution,
              aten::thnn_conv2d, aten::_slow_conv2d_forward]
      - ops: [aten::relu, aten::relu_, aten::gelu, aten::silu, aten::silu_, aten::hardtanh, aten::hardtanh_,
              aten::hardswish, aten::hardswish_, aten::leaky_relu, aten::leaky_relu_, aten::sigmoid]
  - name: pooling
    class: vision
    weight: 1
    modality: image
    kind: ops
    ops: [aten::max_pool2d_with_indices, aten::max_pool2d, aten::avg_pool2d, aten::adaptive_avg_pool2d,
          aten::_adaptive_avg_pool2d, aten::adaptive_max_pool2d, aten::mkldnn_max_pool2d]
  - name: residual_block
    class: vision
    weight: 2
    modality: image
    kind: residual
    ops: [aten::add, aten::add_]
    through: [aten::convolution, aten::_convolution, aten::mkldnn_convolution, aten::cudnn_convolution,
              aten::thnn_conv2d, aten::_slow_conv2d_forward]
  - name: residual_dense
    kind: residual
    ops: [aten::add, aten::add_]
    through: [aten::addmm, aten::mm, aten::bmm, aten::matmul, aten::linear]
  # recsys
  - name: embedding_bag
    class: recsys
    weight: 3
    modality: tabular
    kind: ops
    ops: [aten::_embedding_bag, aten::_embedding_bag_forward_only, aten::embedding_bag]
  - name: feature_interaction
    class: recsys
    weight: 3
    kind: interaction
    sources: [aten::_embedding_bag, aten::_embedding_bag_forward_only, aten::embedding_bag, aten::embedding]
    ops: [aten::cat, aten::stack, aten::bmm, aten::mul, aten::baddbmm]
  # multimodal
  - name: late_fusion
    class: multimodal
    weight: 8
    kind: fusion
  # dense networks: evidence for none of the above
  - name: dense_layer
    class: dense
    weight: 0.5
    kind: ops
    ops: [aten::addmm, aten::linear]
  # training
  - name: optimizer_step
    kind: phase
    phase: optimizer
)yaml";

namespace {

std::string Where(const std::string& origin, const YAML::Node& n) {
  return origin + ":" + std::to_string(n.Mark().line + 1);
}

}  // namespace

const char* WorkloadClassName(WorkloadClass c) {
  switch (c) {
    case WorkloadClass::kNone: return "unclassified";
    case WorkloadClass::kLlm: return "llm";
    case WorkloadClass::kVision: return "vision";
    case WorkloadClass::kRecsys: return "recsys";
    case WorkloadClass::kMultimodal: return "multimodal";
    case WorkloadClass::kDense: return "dense";
  }
  return "?";
}

Result<WorkloadClass> WorkloadClassFromName(const std::string& name) {
  for (int i = 0; i < kNumWorkloadClasses; ++i)
    if (name == WorkloadClassName(static_cast<WorkloadClass>(i))) return static_cast<WorkloadClass>(i);
  return Status::InvalidArgument("unknown workload class '" + name + "' (expected llm, vision, recsys, multimodal or dense)");
}

const char* ModalityName(Modality m) {
  switch (m) {
    case Modality::kNone: return "none";
    case Modality::kImage: return "image";
    case Modality::kText: return "text";
    case Modality::kTabular: return "tabular";
  }
  return "?";
}

const char* PatternKindName(Pattern::Kind k) {
  switch (k) {
    case Pattern::Kind::kOps: return "ops";
    case Pattern::Kind::kChain: return "chain";
    case Pattern::Kind::kCarried: return "carried";
    case Pattern::Kind::kResidual: return "residual";
    case Pattern::Kind::kInteraction: return "interaction";
    case Pattern::Kind::kFusion: return "fusion";
    case Pattern::Kind::kPhase: return "phase";
  }
  return "?";
}

bool OpList::Matches(const std::string& schema) const {
  size_t dot = schema.find('.');
  for (const std::string& n : names) {
    if (n == schema) return true;
    if (dot != std::string::npos && n.size() == dot && schema.compare(0, dot, n) == 0) return true;
  }
  return false;
}

PatternLibrary PatternLibrary::Builtin() {
  PatternLibrary lib;
  Status st = lib.AddYaml(kBuiltinPatterns, "built-in");
  if (!st.ok()) std::abort();  // the built-in library is part of the program; a test parses it
  return lib;
}

Result<PatternLibrary> PatternLibrary::WithFiles(const std::vector<std::string>& files) {
  PatternLibrary lib = Builtin();
  for (const std::string& f : files) GENIE_RETURN_IF_ERROR(lib.AddFile(f));
  return lib;
}

Status PatternLibrary::AddFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::NotFound(path + ": cannot open pattern file");
  std::stringstream text;
  text << f.rdbuf();
  return AddYaml(text.str(), path);
}

Status PatternLibrary::AddYaml(const std::string& text, const std::string& origin) {
  std::vector<Pattern> added;
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap() || !root["patterns"] || !root["patterns"].IsSequence())
      return Status::InvalidArgument(Where(origin, root) + ": a pattern file holds a 'patterns:' list");
    for (const YAML::Node& n : root["patterns"]) {
      if (!n.IsMap()) return Status::InvalidArgument(Where(origin, n) + ": each pattern is a mapping");
      auto bad = [&](const YAML::Node& at, const std::string& why) {
        return Status::InvalidArgument(Where(origin, at) + ": " + why);
      };
      auto list = [&](const char* key, OpList* out, bool required) -> Status {
        YAML::Node v = n[key];
        if (!v) return required ? bad(n, std::string("this kind needs '") + key + "'") : Status::OK();
        if (!v.IsSequence() || v.size() == 0) return bad(v, std::string("'") + key + "' must be a non-empty list of op schemas");
        for (const YAML::Node& s : v) {
          std::string name = s.as<std::string>();
          if (name.find("::") == std::string::npos)
            return bad(s, "'" + name + "' is not an op schema (like aten::add or aten::add.Tensor)");
          out->names.push_back(name);
        }
        return Status::OK();
      };
      for (const auto& kv : n) {
        static const char* known[] = {"name", "class", "weight", "modality", "min_count", "kind", "ops", "steps",
                                      "via", "through", "sources", "phase", "min_segments"};
        std::string key = kv.first.as<std::string>();
        bool ok = false;
        for (const char* k : known) ok |= key == k;
        if (!ok) return bad(kv.first, "unknown key '" + key + "'");
      }
      Pattern p;
      p.origin = origin;
      if (!n["name"]) return bad(n, "a pattern needs a 'name'");
      p.name = n["name"].as<std::string>();
      if (n["class"]) {
        auto c = WorkloadClassFromName(n["class"].as<std::string>());
        if (!c.ok()) return bad(n["class"], c.status().message());
        p.klass = c.value();
      }
      if (n["weight"]) {
        p.weight = n["weight"].as<double>();
        if (p.weight < 0) return bad(n["weight"], "'weight' must not be negative");
      }
      if (n["min_count"]) p.min_count = n["min_count"].as<uint64_t>();
      if (n["modality"]) {
        std::string m = n["modality"].as<std::string>();
        if (m == "image") p.modality = Modality::kImage;
        else if (m == "text") p.modality = Modality::kText;
        else if (m == "tabular") p.modality = Modality::kTabular;
        else return bad(n["modality"], "unknown modality '" + m + "' (expected image, text or tabular)");
      }
      if (!n["kind"]) return bad(n, "pattern '" + p.name + "' needs a 'kind'");
      std::string kind = n["kind"].as<std::string>();
      Status st;
      if (kind == "ops") {
        p.kind = Pattern::Kind::kOps;
        st = list("ops", &p.ops, true);
      } else if (kind == "chain") {
        p.kind = Pattern::Kind::kChain;
        YAML::Node steps = n["steps"];
        if (!steps || !steps.IsSequence() || steps.size() < 2)
          return bad(steps ? steps : n, "a chain needs 'steps', a list of at least two {ops: [...]}");
        for (const YAML::Node& s : steps) {
          if (!s.IsMap() || !s["ops"] || !s["ops"].IsSequence()) return bad(s, "each step is {ops: [...]}");
          OpList step;
          for (const YAML::Node& o : s["ops"]) step.names.push_back(o.as<std::string>());
          p.steps.push_back(step);
        }
        st = list("via", &p.via, false);
      } else if (kind == "carried") {
        p.kind = Pattern::Kind::kCarried;
        st = list("ops", &p.ops, true);
      } else if (kind == "residual") {
        p.kind = Pattern::Kind::kResidual;
        st = list("ops", &p.ops, true);
        if (st.ok()) st = list("through", &p.through, true);
      } else if (kind == "interaction") {
        p.kind = Pattern::Kind::kInteraction;
        st = list("ops", &p.ops, true);
        if (st.ok()) st = list("sources", &p.sources, true);
      } else if (kind == "fusion") {
        p.kind = Pattern::Kind::kFusion;
      } else if (kind == "phase") {
        p.kind = Pattern::Kind::kPhase;
        if (!n["phase"]) return bad(n, "a phase pattern needs 'phase'");
        p.phase = n["phase"].as<std::string>();
        static const char* phases[] = {"forward", "backward", "optimizer", "prefill", "decode"};
        bool ok = false;
        for (const char* ph : phases) ok |= p.phase == ph;
        if (!ok) return bad(n["phase"], "unknown phase '" + p.phase + "' (forward, backward, optimizer, prefill, decode)");
        if (n["min_segments"]) p.min_segments = n["min_segments"].as<uint64_t>();
      } else {
        return bad(n["kind"], "unknown kind '" + kind + "' (ops, chain, carried, residual, interaction, fusion, phase)");
      }
      if (!st.ok()) return st;
      added.push_back(std::move(p));
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  for (Pattern& p : added) {
    bool replaced = false;
    for (Pattern& q : patterns_) {
      if (q.name == p.name) {
        q = p;
        replaced = true;
      }
    }
    if (!replaced) patterns_.push_back(std::move(p));
  }
  return Status::OK();
}

}  // namespace genie::analyzer

#include "analyzer/pattern_library.h"
#include "tests/catch.h"

using namespace genie;
using namespace genie::analyzer;

TEST_CASE("the built-in pattern library parses and covers every workload class") {
  PatternLibrary lib;
  REQUIRE(lib.AddYaml(kBuiltinPatterns, "built-in").ok());
  bool seen[kNumWorkloadClasses] = {};
  for (const Pattern& p : lib.patterns()) seen[static_cast<int>(p.klass)] = true;
  REQUIRE(seen[static_cast<int>(WorkloadClass::kLlm)]);
  REQUIRE(seen[static_cast<int>(WorkloadClass::kVision)]);
  REQUIRE(seen[static_cast<int>(WorkloadClass::kRecsys)]);
  REQUIRE(seen[static_cast<int>(WorkloadClass::kMultimodal)]);
}

TEST_CASE("an op list entry without an overload matches every overload, one with an overload only itself") {
  OpList any{{"aten::add"}};
  REQUIRE(any.Matches("aten::add.Tensor"));
  REQUIRE(any.Matches("aten::add"));
  REQUIRE_FALSE(any.Matches("aten::add_.Tensor"));
  REQUIRE_FALSE(any.Matches("aten::addmm"));
  OpList one{{"aten::add.Tensor"}};
  REQUIRE(one.Matches("aten::add.Tensor"));
  REQUIRE_FALSE(one.Matches("aten::add.Scalar"));
}

TEST_CASE("a user pattern replaces the built-in one of the same name and adds new ones") {
  PatternLibrary lib = PatternLibrary::Builtin();
  size_t before = lib.patterns().size();
  Status st = lib.AddYaml(R"(
patterns:
  - name: pooling
    class: vision
    weight: 5
    kind: ops
    ops: [aten::max_pool2d_with_indices]
  - name: layer_norm
    class: llm
    kind: ops
    ops: [aten::native_layer_norm]
)", "mine.yaml");
  REQUIRE(st.ok());
  REQUIRE(lib.patterns().size() == before + 1);
  for (const Pattern& p : lib.patterns())
    if (p.name == "pooling") {
      REQUIRE(p.weight == 5);
      REQUIRE(p.origin == "mine.yaml");
    }
}

TEST_CASE("a bad pattern file is an error naming the file, the line and the problem") {
  PatternLibrary lib;
  Status st = lib.AddYaml("patterns:\n  - name: x\n    kind: ops\n    ops: [relu]\n", "p.yaml");
  REQUIRE(st.code() == Status::Code::kInvalidArgument);
  REQUIRE(st.message().find("p.yaml:4") != std::string::npos);
  REQUIRE(st.message().find("'relu' is not an op schema") != std::string::npos);

  st = lib.AddYaml("patterns:\n  - name: x\n    kind: ops\n    opz: [aten::relu]\n", "p.yaml");
  REQUIRE(st.message().find("p.yaml:4") != std::string::npos);
  REQUIRE(st.message().find("unknown key 'opz'") != std::string::npos);

  st = lib.AddYaml("patterns:\n  - name: x\n    class: speech\n    kind: ops\n    ops: [aten::relu]\n", "p.yaml");
  REQUIRE(st.message().find("p.yaml:3") != std::string::npos);
  REQUIRE(st.message().find("speech") != std::string::npos);

  st = lib.AddYaml("patterns:\n  - name: x\n    kind: chain\n    steps: [{ops: [aten::mm]}]\n", "p.yaml");
  REQUIRE(st.message().find("at least two") != std::string::npos);

  st = lib.AddYaml("patterns: [\n  - name: x\n", "broken.yaml");
  REQUIRE(st.code() == Status::Code::kInvalidArgument);
  REQUIRE(st.message().rfind("broken.yaml:", 0) == 0);
  REQUIRE(lib.patterns().empty());  // nothing of a bad file is kept
}

"""`genie analyze` on real recordings: every example and torchvision's resnet18
classified, with the evidence that decided it; pattern files; the dot graph."""
import json
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, GENIE, PYTHON

RESNET = """
    import torch, torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to("remote_accelerator")
    with torch.no_grad():
        for _ in range(2):
            print(model(torch.randn(2, 3, 64, 64, device="remote_accelerator")).argmax(dim=1).tolist())
"""

# example -> (class, training, patterns that must match, a module path one of them must name)
EXPECTED = {
    "gpt_decode": ("llm", False, {"attention", "kv_cache", "decode_phase", "prefill_phase"}, "GPT.blocks.0.attn"),
    "cnn": ("vision", True, {"conv_bn_act", "pooling"}, "ConvNet.features"),
    "recsys": ("recsys", True, {"embedding_bag", "feature_interaction"}, "Recommender.bags.0"),
    "two_tower": ("multimodal", True, {"late_fusion", "attention", "conv_bn_act"}, "TwoTower"),
    "mlp_train": ("dense", True, {"dense_layer", "residual_dense", "optimizer_step"}, "MLP.fc1"),
    "resnet18": ("vision", False, {"conv_bn_act", "residual_block", "pooling"}, "ResNet.layer1.0"),
}


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze")
    (folder / "resnet18.py").write_text("\n".join(l[4:] for l in RESNET.splitlines()))
    out = {}
    for name in EXPECTED:
        program = folder / "resnet18.py" if name == "resnet18" else EXAMPLES / f"{name}.py"
        trace = folder / f"{name}.gtrace"
        r = subprocess.run([GENIE, "record", "-o", trace, "--payload", "none", PYTHON, program], capture_output=True,
                           text=True, cwd=folder, timeout=600)
        assert r.returncode == 0, r.stderr
        out[name] = trace
    return out


def analyze(trace, *flags):
    r = subprocess.run([GENIE, "analyze", "--json", *map(str, flags), trace], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_workload_is_classified_with_its_evidence(traces, name):
    klass, training, patterns, module = EXPECTED[name]
    a = analyze(traces[name])
    assert a["class"] == klass, a["scores"]
    assert a["training"] == training
    matched = {p["name"]: p for p in a["patterns"] if p["counted"]}
    assert patterns <= set(matched), sorted(matched)
    named = {m["module"] for p in patterns for m in matched[p]["modules"]}
    assert any(m.startswith(module) for m in named), named
    assert 0.5 < a["confidence"] <= 1.0


def test_llm_statistics_show_phases_kv_cache_and_what_residency_saves(traces):
    a = analyze(traces["gpt_decode"])
    assert a["phases"]["decode"]["segments"] == a["segments"] - 1
    assert a["phases"]["prefill"]["segments"] == 1
    assert a["kv_cache_bytes"] > 0
    assert a["network"]["no_residency_bytes"] > 5 * a["network"]["resident_bytes"]
    assert a["critical_path"]["ops"] <= a["ops"] and a["flops"] > 0
    decode = [s for s in a["segment_stats"] if s["phase"] == "decode"]
    # With residency a decode step sends the token id up and brings the next one down.
    assert all(s["up_resident"] <= 16 and s["down_resident"] <= 16 for s in decode)
    assert sum(a["histogram"].values()) == a["ops"]


def test_training_is_told_from_the_optimizer_and_backward(traces):
    assert analyze(traces["mlp_train"])["optimizer"] == "adam"
    assert analyze(traces["cnn"])["optimizer"] == "sgd"
    assert analyze(traces["resnet18"])["optimizer"] == ""


def test_a_user_pattern_file_adds_evidence_and_can_change_the_class(traces, tmp_path):
    patterns = tmp_path / "mine.yaml"
    patterns.write_text(
        "patterns:\n"
        "  - name: layer_norm_everywhere\n"
        "    class: recsys\n"
        "    weight: 50\n"
        "    kind: ops\n"
        "    ops: [aten::native_layer_norm]\n")
    a = analyze(traces["gpt_decode"], "--patterns", patterns)
    assert a["class"] == "recsys"
    assert any(p["name"] == "layer_norm_everywhere" and p["count"] > 0 for p in a["patterns"])
    # The same file from genie.yaml.
    (tmp_path / "genie.yaml").write_text("patterns: [mine.yaml]\n")
    a = analyze(traces["gpt_decode"], "--config", tmp_path / "genie.yaml")
    assert a["class"] == "recsys"


def test_a_bad_pattern_file_is_one_error_with_its_line(traces, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("patterns:\n  - name: x\n    kind: ops\n    ops: [aten::relu]\n    colour: red\n")
    r = subprocess.run([GENIE, "analyze", "--patterns", bad, traces["cnn"]], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("genie: error:") == 1
    assert f"{bad}:5" in r.stderr and "colour" in r.stderr


def test_dot_graph_highlights_matched_patterns(traces, tmp_path):
    dot = tmp_path / "g.dot"
    r = subprocess.run([GENIE, "analyze", "--dot", dot, traces["gpt_decode"]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = dot.read_text()
    assert text.startswith("digraph segments {") and text.rstrip().endswith("}")
    assert "kv_cache" in text and "->" in text
    assert "#f4cccc" in text  # llm colour on the decode nodes
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", dot, "-o", tmp_path / "g.svg"], check=True)


def test_text_report_names_class_and_evidence(traces):
    r = subprocess.run([GENIE, "analyze", traces["recsys"]], capture_output=True, text=True)
    assert r.returncode == 0
    assert "workload   recsys training" in r.stdout
    assert "embedding_bag" in r.stdout and "Recommender.bags.0" in r.stdout


def test_unreadable_trace_is_one_error(tmp_path):
    bad = tmp_path / "x.gtrace"
    bad.write_bytes(b"not a trace")
    r = subprocess.run([GENIE, "analyze", bad], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("genie: error:") == 1 and "x.gtrace" in r.stderr

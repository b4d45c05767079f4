"""`genie diff` on real recordings: identical runs diff clean; a model change
fails with the module path that changed named; unreadable traces exit 2."""
import json
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, PYTHON, SOURCE

MODEL = """
    import argparse, torch
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--head-dtype", default="float32")
    a = p.parse_args()
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(
                [torch.nn.Linear(a.hidden if i else 8, a.hidden) for i in range(a.layers)])
            self.head = torch.nn.Linear(a.hidden, 4).to(getattr(torch, a.head_dtype))

        def forward(self, x):
            for b in self.blocks:
                x = torch.relu(b(x))
            return self.head(x.to(self.head.weight.dtype))

    net = Net().to("remote_accelerator")
    for step in range(3):
        print(round(net(torch.randn(4, 8, device="remote_accelerator")).sum().item(), 4))
"""


def record_model(genie, name, *args):
    prog = genie.script(MODEL, name="net.py")
    r, trace = genie.record(prog, *args, trace=name + ".gtrace", payload="none")
    assert r.returncode == 0, r.stderr
    return trace


def diff(genie, base, new, *flags):
    r = genie.run("diff", "--json", *flags, base, new)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def module(report, path):
    found = [m for m in report["modules"] if m["module"] == path]
    assert found, f"{path} not among {[m['module'] for m in report['modules']]}"
    return found[0]


def test_two_recordings_of_one_program_diff_clean(genie):
    a = record_model(genie, "a")
    b = record_model(genie, "b")
    r = genie.run("diff", a, b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout
    code, report = diff(genie, a, b)
    assert code == 0 and report["identical"] and not report["regression"]
    assert report["segments"]["identical"] == 3 and report["modules"] == [] and report["changes"] == []


def test_one_more_layer_fails_naming_the_new_module(genie):
    base = record_model(genie, "base")
    new = record_model(genie, "new", "--layers", "3")
    r = genie.run("diff", base, new)
    assert r.returncode == 1
    assert "Net.blocks.2" in r.stdout and "(new)" in r.stdout
    code, report = diff(genie, base, new)
    assert code == 1
    layer = module(report, "Net.blocks.2")
    assert layer["base_ops"] == 0 and layer["new_ops"] > 0 and layer["added"] == layer["new_ops"]
    assert {m["module"] for m in report["modules"] if m["module"].startswith("Net.")} == {"Net.blocks.2"}
    assert report["ops"]["added"] > 0 and report["ops"]["removed"] == 0
    assert [r["category"] for r in report["regressions"]][0] == "ops"
    # Parameters of the new layer are uploaded too.
    assert report["new"]["upload_bytes"] > report["base"]["upload_bytes"]


def test_a_changed_hidden_size_fails_on_shapes_naming_each_layer(genie):
    base = record_model(genie, "base")
    new = record_model(genie, "new", "--hidden", "32")
    code, report = diff(genie, base, new)
    assert code == 1
    assert report["ops"]["added"] == 0 and report["ops"]["removed"] == 0 and report["ops"]["shape_changed"] > 0
    for path in ("Net.blocks.0", "Net.blocks.1", "Net.head"):
        assert module(report, path)["shape_changed"] > 0
    addmm = [c for c in report["changes"] if c["module"] == "Net.blocks.0" and c["new_schema"] == "aten::addmm"]
    assert addmm[0]["base_outputs"] == "float32[4,16]" and addmm[0]["new_outputs"] == "float32[4,32]"
    assert addmm[0]["count"] == 3  # once per step
    assert "shapes" in {r["category"] for r in report["regressions"]}
    # Shapes alone may be allowed: then only the bytes moved count.
    code, report = diff(genie, base, new, "--fail-on", "ops")
    assert code == 0 and report["regressions"] == []


def test_a_changed_dtype_fails_naming_the_module(genie):
    base = record_model(genie, "base")
    new = record_model(genie, "new", "--head-dtype", "float64")
    r = genie.run("diff", base, new)
    assert r.returncode == 1
    assert "Net.head" in r.stdout and "float64" in r.stdout
    code, report = diff(genie, base, new)
    head = module(report, "Net.head")
    assert head["shape_changed"] > 0
    changed = [c for c in report["changes"] if c["module"] == "Net.head" and c["kind"] == "shape"]
    assert any("float32" in c["base_outputs"] and "float64" in c["new_outputs"] for c in changed)
    assert not any(m["module"].startswith("Net.blocks") for m in report["modules"])


def test_threshold_lets_small_changes_pass(genie):
    base = record_model(genie, "base")
    new = record_model(genie, "new", "--layers", "3")
    code, report = diff(genie, base, new, "--threshold", "1000")
    assert code == 0 and report["regressions"] == [] and report["ops"]["added"] > 0


def test_unreadable_traces_exit_2_with_one_error(genie, tmp_path):
    good = record_model(genie, "good")
    r = genie.run("diff", good, tmp_path / "missing.gtrace")
    assert r.returncode == 2
    assert r.stderr.count("genie: error:") == 1 and "missing.gtrace" in r.stderr
    bad = tmp_path / "bad.gtrace"
    bad.write_bytes(good.read_bytes()[:-30])
    r = genie.run("diff", bad, good)
    assert r.returncode == 2 and "bad.gtrace" in r.stderr
    r = genie.run("diff", "--fail-on", "ops,speed", good, good)
    assert r.returncode == 2 and "speed" in r.stderr


# The project's own regression check: each example, recorded now, against its golden trace.
GOLDEN = SOURCE / "tests" / "golden" / "examples"


def torch_minor():
    out = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return ".".join(out.split("+")[0].split(".")[:2])


def golden_examples():
    for line in (GOLDEN / "examples.list").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, *args = line.split()
            yield pytest.param(name, args, id=name)


@pytest.mark.parametrize("name,args", list(golden_examples()))
def test_example_matches_its_golden_trace(genie, tmp_path, name, args):
    folder = GOLDEN / f"torch-{torch_minor()}"
    if not folder.is_dir():
        pytest.skip(f"no golden traces for torch {torch_minor()} (scripts/update-goldens.sh makes them)")
    golden = folder / f"{name}.gtrace"
    # The checked-in dump is the golden trace's own.
    assert genie.dump(golden) == (folder / f"{name}.txt").read_text(), \
        f"{name}.txt is stale: run scripts/update-goldens.sh"
    shutil.copy(EXAMPLES / f"{name}.py", tmp_path / f"{name}.py")
    r, trace = genie.record(f"{name}.py", *args, payload="none")
    assert r.returncode == 0, r.stderr
    d = genie.run("diff", golden, trace)
    assert d.returncode == 0, f"{name} differs from its golden trace (scripts/update-goldens.sh regenerates):\n" + d.stdout

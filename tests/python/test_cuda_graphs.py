"""Repeated segments run as CUDA graphs on a CUDA runtime (runtime.cc
RunGraph). These need a GPU: on machines without one they are skipped, and
they run on the GPU machines with GENIE_BINARY and GENIE_PYTHON pointing at
that build and interpreter."""
import subprocess

import pytest

from conftest import EXAMPLES, PYTHON, Runtime, pool_config
from test_live import live


def _has_cuda():
    r = subprocess.run([PYTHON, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True,
                       text=True)
    return r.stdout.strip() == "True"


pytestmark = pytest.mark.skipif(not _has_cuda(), reason="no CUDA device here: CUDA graphs are tested on GPU machines")

LOOP = """
import sys
import torch, torch.nn as nn
dev = sys.argv[1]
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)).to(dev).eval()
h = torch.randn(4, 32).to(dev)
acc = torch.zeros(4, 32).to(dev)
with torch.no_grad():
    for step in range(10):
        h = model(h).tanh()          # reads the previous step's h: copied into the graph each replay
        h.add_(0.5)                  # in place on a value of this segment: fine in a graph
        if ACCUMULATE:
            acc.add_(h)              # in place on a value from before the segment: op by op
        print(*torch.stack([h.sum(), acc.sum()]).tolist())  # one materialization per step
"""


def values(stdout):
    return [float(line) for line in stdout.split()]


def run_both(genie, accumulate):
    program = genie.script(LOOP.replace("ACCUMULATE", str(accumulate)))
    want = subprocess.run([PYTHON, str(program), "cpu"], capture_output=True, text=True, check=True)
    r, report = live(genie, program, "remote_accelerator", extra=["--device", "cuda"])
    assert r.returncode == 0, r.stderr
    got = values(r.stdout)
    assert got == pytest.approx(values(want.stdout), rel=1e-4, abs=1e-4)
    return report


def test_a_segment_that_repeats_runs_as_a_cuda_graph_with_eager_results(genie):
    report = run_both(genie, accumulate=False)
    # Ten steps of one fingerprint: two run op by op, the third is captured, all from the third on replay.
    assert report["graph_segments"] >= 7, report


def test_a_segment_writing_in_place_to_an_earlier_value_runs_op_by_op(genie):
    report = run_both(genie, accumulate=True)
    assert report["segments"] == 10 and report["graph_segments"] == 0, report


def test_a_decode_loop_run_two_steps_ahead_on_cuda_gives_what_one_step_ahead_gives(genie, tmp_path):
    # Two steps ahead, the step after the next runs on the GPU while the
    # next's values wait for their request (copied out of its graph where
    # it ran as one).
    program = EXAMPLES / "gpt_decode.py"
    out = {}
    for steps in ("1", "2"):
        rt = Runtime(tmp_path, extra=("--run-ahead-steps", steps), device="cuda")
        try:
            cfg = pool_config(tmp_path, rt.address)
            r, report = live(genie, program, "--tokens", "48", pool="test-pool", config=str(cfg))
        finally:
            rt.stop()
        assert r.returncode == 0, r.stderr
        assert report["pushed"] >= 30, report
        out[steps] = r.stdout
    assert out["1"] == out["2"]
    want = subprocess.run([PYTHON, str(program), "--device", "cuda", "--tokens", "48"], capture_output=True, text=True,
                          check=True)
    assert out["2"].splitlines()[0] == want.stdout.splitlines()[0]  # the tokens generated


FRESH = """
import sys
import torch, torch.nn as nn
dev = sys.argv[1]
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).to(dev).eval()
with torch.no_grad():
    for step in range(40):
        images = torch.randn(4, 3, 64, 64)        # 196 KiB, new at every step: a transient upload
        print(*model(images.to(dev)).sum(1).tolist())
"""


def on_a_cuda_runtime(genie, tmp_path, source, max_memory):
    """Runs program `source` eagerly on the CPU, then live against a CUDA
    runtime with `--max-memory max_memory`; asserts that the live run
    succeeds. Returns (the eager process, the live process, its report)."""
    program = genie.script(source)
    want = subprocess.run([PYTHON, str(program), "cpu"], capture_output=True, text=True, check=True)
    rt = Runtime(tmp_path, extra=("--max-memory", max_memory, "--log-level", "warn"), device="cuda")
    try:
        r, report = live(genie, program, "remote_accelerator", pool="test-pool", config=str(pool_config(tmp_path, rt.address)))
    finally:
        rt.stop()
    assert r.returncode == 0, r.stderr
    return want, r, report


def test_fresh_inputs_on_a_cuda_runtime_are_bound_in_graph_replays_and_freed(genie, tmp_path):
    # Through pinned host buffers, taken as the input without a copy; the
    # repeated segment runs as a graph, whose input buffers are refilled from
    # each step's upload. 40 uploads of 196 KiB under a 4 MiB limit: each is
    # freed once bound.
    want, r, report = on_a_cuda_runtime(genie, tmp_path, FRESH, "4M")
    assert values(r.stdout) == pytest.approx(values(want.stdout), rel=1e-4, abs=1e-4)
    assert report["graph_segments"] >= 30, report
    assert report["uploaded_blobs"] >= 40, report


LARGE = """
import sys
import torch
dev = sys.argv[1]
torch.manual_seed(0)
w = torch.randn(64, 8).to(dev)
kept = []
for step in range(12):
    x = torch.randn(12289, 64)                  # 3 MiB and 4 KiB: four pieces of 1 MiB, then the rest
    y = x.to(dev)
    if step % 4 == 0:
        kept.append(y)
    print(*(y @ w).sum(0).tolist())
print(*[k.sum().item() for k in kept])
"""


def test_large_uploads_reach_a_cuda_device_piece_by_piece_with_eager_results(genie, tmp_path):
    # Through the shared ring, from which genie run sends each piece as the
    # program copies the next, and on the runtime each piece copied to the
    # device as it arrives (Runtime::ReceiveTransient); every fourth kept.
    want, r, report = on_a_cuda_runtime(genie, tmp_path, LARGE, "32M")
    # A piece in the wrong place would move these sums by hundreds.
    assert values(r.stdout) == pytest.approx(values(want.stdout), rel=1e-4, abs=0.05)
    assert report["ring_payloads"] == 12, report
    assert report["uploaded_ahead"] == 11, report  # all but the first step's: no runtime before its segment

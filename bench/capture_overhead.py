"""Capture overhead of `genie record` against the same program run eagerly on
the CPU, measured in one command.

Each workload of bench/capture_workloads.py runs N times eagerly (`--device
cpu`) and N times under `genie record` (`--device remote_accelerator`),
alternately. The programs time their own loops, so interpreter start-up and
torch's import are left out; the recorder's fixed start-up cost is printed
separately. Added time per op = (median recorded loop - median eager loop) /
ops captured. Graph bytes per op = the trace's segment chunks (all but
payloads) / ops.

Targets (issue 2): at most 15 us added per op, at most 40 bytes per op.

    /usr/bin/python3 bench/capture_overhead.py [--genie build/cli/genie] [--repeats 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = [("train", 60), ("decode", 60)]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr}")
    return r.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--genie", default=str(ROOT / "build" / "cli" / "genie"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    script = str(ROOT / "bench" / "capture_workloads.py")

    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "bench.gtrace")
        starts_plain, starts_rec = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            run([args.python, "-c", "import torch"])
            starts_plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            run([args.genie, "record", "-o", trace, args.python, "-c", "import torch"])
            starts_rec.append(time.perf_counter() - t)
        fixed = statistics.median(starts_rec) - statistics.median(starts_plain)
        print(f"fixed start-up added by genie record (import torch, no ops): {fixed * 1e3:.1f} ms")

        print(f"{'workload':<9} {'ops':>7} {'eager loop s':>13} {'recorded loop s':>16} {'added us/op':>12} "
              f"{'graph B/op':>11}")
        added_all, bytes_all = [], []
        for name, steps in WORKLOADS:
            cmd = [script, "--workload", name, "--steps", str(steps)]
            eager, recorded = [], []
            for _ in range(args.repeats):
                eager.append(json.loads(run([args.python, *cmd, "--device", "cpu"]))["loop_seconds"])
                out = run([args.genie, "record", "-o", trace, args.python, *cmd])
                recorded.append(json.loads(out)["loop_seconds"])
            info = json.loads(run([args.genie, "trace", "info", "--json", trace]))
            ops = info["ops"]
            t_eager, t_rec = statistics.median(eager), statistics.median(recorded)
            added = (t_rec - t_eager) / ops * 1e6
            per_op = info["graph_bytes"] / ops
            added_all.append(added)
            bytes_all.append(per_op)
            print(f"{name:<9} {ops:>7} {t_eager:>13.3f} {t_rec:>16.3f} {added:>12.1f} {per_op:>11.1f}")
    print(f"added time per op, median over workloads: {statistics.median(added_all):.1f} us (target <= 15)")
    print(f"graph bytes per op, median over workloads: {statistics.median(bytes_all):.1f} B (target <= 40)")


if __name__ == "__main__":
    main()

"""Capture overhead of `genie record` against the same program run eagerly on
the CPU, measured in one command.

Each workload of bench/capture_workloads.py runs eagerly (`--device cpu`) and
under `genie record` (`--device remote_accelerator`), alternately, N times
each, at two loop lengths (S and 3S steps). The programs time their own loops,
so interpreter start-up and torch's import are left out. From the medians:

  added time per op = ((rec(3S) - eager(3S)) - (rec(S) - eager(S))) / (ops(3S) - ops(S))

the steady-state cost of capturing one more op, and the one-time cost inside
the loop = (rec(S) - eager(S)) - added * ops(S) (lazy imports and first-use
work that eager runs do not do; torch 2.x imports torch._dynamo lazily on the
first capture). Graph bytes per op = the trace's segment chunks (all but
payloads) / ops, at 3S.

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
WORKLOADS = [("train", 40), ("decode", 40)]


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
              f"{'one-time s':>11} {'graph B/op':>11}")
        added_all, bytes_all = [], []
        for name, steps in WORKLOADS:
            measured = {}
            for n in (steps, 3 * steps):
                cmd = [script, "--workload", name, "--steps", str(n)]
                eager, recorded = [], []
                for _ in range(args.repeats):
                    eager.append(json.loads(run([args.python, *cmd, "--device", "cpu"]))["loop_seconds"])
                    recorded.append(json.loads(run([args.genie, "record", "-o", trace, args.python, *cmd]))["loop_seconds"])
                info = json.loads(run([args.genie, "trace", "info", "--json", trace]))
                measured[n] = (statistics.median(eager), statistics.median(recorded), info["ops"], info["graph_bytes"])
            e1, r1, ops1, _ = measured[steps]
            e3, r3, ops3, graph3 = measured[3 * steps]
            added = ((r3 - e3) - (r1 - e1)) / (ops3 - ops1)
            once = (r1 - e1) - added * ops1
            per_op = graph3 / ops3
            added_all.append(added * 1e6)
            bytes_all.append(per_op)
            print(f"{name:<9} {ops3:>7} {e3:>13.3f} {r3:>16.3f} {added * 1e6:>12.1f} {once:>11.3f} {per_op:>11.1f}")
    print(f"added time per op, median over workloads: {statistics.median(added_all):.1f} us (target <= 15)")
    print(f"graph bytes per op, median over workloads: {statistics.median(bytes_all):.1f} B (target <= 40)")


if __name__ == "__main__":
    main()

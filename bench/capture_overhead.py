"""Capture overhead of `genie record`, against the same program run eagerly
on the CPU, in one command.

For each workload: the median wall time of N eager runs (`--device cpu`) and
of N recorded runs (`genie record ... --device remote_accelerator`), run
alternately; the added time per captured op is (recorded - eager) / ops. The
graph bytes per op are the trace's segment chunks (everything but payloads)
over its ops.

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
WORKLOADS = [
    ("mlp_train", ["--steps", "40"]),
    ("gpt_decode", ["--tokens", "40"]),
    ("cnn", ["--steps", "20"]),
    ("recsys", ["--steps", "20"]),
    ("two_tower", ["--steps", "10"]),
]


def timed(cmd):
    start = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--genie", default=str(ROOT / "build" / "cli" / "genie"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    print(f"{'workload':<12} {'ops':>7} {'eager s':>9} {'recorded s':>11} {'added us/op':>12} {'graph B/op':>11}")
    added_all, bytes_all = [], []
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "bench.gtrace")
        for name, extra in WORKLOADS:
            program = str(ROOT / "examples" / f"{name}.py")
            eager, recorded = [], []
            for _ in range(args.repeats):
                eager.append(timed([args.python, program, "--device", "cpu", *extra]))
                recorded.append(timed([args.genie, "record", "-o", trace, args.python, program, *extra]))
            info = json.loads(subprocess.run([args.genie, "trace", "info", "--json", trace],
                                             capture_output=True, text=True, check=True).stdout)
            ops = info["ops"]
            t_eager, t_rec = statistics.median(eager), statistics.median(recorded)
            added = (t_rec - t_eager) / ops * 1e6
            per_op = info["graph_bytes"] / ops
            added_all.append(added)
            bytes_all.append(per_op)
            print(f"{name:<12} {ops:>7} {t_eager:>9.3f} {t_rec:>11.3f} {added:>12.1f} {per_op:>11.1f}")
    print(f"median added time per op: {statistics.median(added_all):.1f} us (target <= 15)")
    print(f"median graph bytes per op: {statistics.median(bytes_all):.1f} B (target <= 40)")


if __name__ == "__main__":
    main()

"""Runs an example's main() several times in one process and prints the
median wall time of the runs after the first, as JSON on the last line of
stderr. Interpreter start-up and torch's import are outside the timing.

    python3 bench/timed_example.py examples/cnn.py --device cpu
"""
import json
import runpy
import statistics
import sys
import time

import torch  # noqa: F401  (imported before timing)

RUNS = 4

if __name__ == "__main__":
    program, args = sys.argv[1], sys.argv[2:]
    times = []
    for _ in range(RUNS):
        sys.argv = [program, *args]
        start = time.perf_counter()
        runpy.run_path(program, run_name="__main__")
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(times[1:]), "runs": RUNS}), file=sys.stderr)

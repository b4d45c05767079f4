"""Runs an example's main() several times in one process and prints, as
JSON on the last line of stderr, the median wall time of the runs after the
first ("seconds") and the median CPU time of this process over those runs
("cpu": user and system, all its threads). With GENIE_BENCH_PROCESSES, a
comma-separated list of names and pids ("genie=PARENT,runtime=1234",
PARENT: this process's parent), also the median CPU time of each of those
processes over the same runs ("cpu_of"), read from /proc. Interpreter
start-up and torch's import are outside the timing.

    python3 bench/timed_example.py examples/cnn.py --device cpu

With GENIE_BENCH_FIFOS=IN,OUT (two named pipes) it runs main() on demand
instead, so that a benchmark can alternate two such processes run by run
(bench/live_vs_eager.py: eager and live meet the machine at the same
moments): each line read from IN holds arguments to append to the
program's ("--steps 40"), for one run of main(); its wall time, this
process's CPU time and the watched processes' go to OUT as one JSON line.
End of file on IN ends the process.
"""
import json
import os
import resource
import runpy
import statistics
import sys
import time

import torch  # noqa: F401  (imported before timing)

RUNS = 4


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def process_cpu(pid):
    """Seconds process `pid` has run on a CPU, all its threads: from
    /proc/PID/task/*/schedstat (nanoseconds), or /proc/PID/stat (clock ticks,
    10 ms) where the kernel keeps no schedstat."""
    if os.path.exists(f"/proc/{pid}/schedstat"):
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watched():
    """GENIE_BENCH_PROCESSES as {name: pid}."""
    out = {}
    for item in filter(None, os.environ.get("GENIE_BENCH_PROCESSES", "").split(",")):
        name, pid = item.split("=")
        out[name] = os.getppid() if pid == "PARENT" else int(pid)
    return out


def one_run(program, args, others):
    """main() once: (seconds, this process's CPU seconds, {name: CPU seconds of a watched process})."""
    sys.argv = [program, *args]
    before = {name: process_cpu(pid) for name, pid in others.items()}
    start, start_cpu = time.perf_counter(), cpu()
    runpy.run_path(program, run_name="__main__")
    seconds, used = time.perf_counter() - start, cpu() - start_cpu
    return seconds, used, {name: process_cpu(pid) - before[name] for name, pid in others.items()}


def on_demand(program, args, others, fifos):
    requests, answers = fifos.split(",")
    with open(requests) as inp, open(answers, "w") as out:
        for line in inp:
            seconds, used, of = one_run(program, [*args, *line.split()], others)
            out.write(json.dumps({"seconds": seconds, "cpu": used, "cpu_of": of}) + "\n")
            out.flush()


if __name__ == "__main__":
    program, args = sys.argv[1], sys.argv[2:]
    others = watched()
    if os.environ.get("GENIE_BENCH_FIFOS"):
        on_demand(program, args, others, os.environ["GENIE_BENCH_FIFOS"])
        sys.exit(0)
    times, cpus, other_cpus = [], [], {name: [] for name in others}
    for _ in range(RUNS):
        seconds, used, of = one_run(program, args, others)
        times.append(seconds)
        cpus.append(used)
        for name, v in of.items():
            other_cpus[name].append(v)
    print(json.dumps({"seconds": statistics.median(times[1:]), "cpu": statistics.median(cpus[1:]), "runs": RUNS,
                      "cpu_of": {name: statistics.median(v[1:]) for name, v in other_cpus.items()}}),
          file=sys.stderr)

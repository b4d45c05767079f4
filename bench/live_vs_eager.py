"""Live mode against eager PyTorch on the same machine, in one command.

For each example: eager = the median wall time of the program's main() run
in-process with `--device cpu` (runs 2-4 of 4; interpreter start-up and
torch's import excluded, see timed_example.py). Live = the same, with the
program started by `genie run --pool bench` against one `genie serve` on
loopback, so every segment runs on the runtime. Targets (issue 5): at most
1.0x for the decode loop, 1.1x for the others.

These whole runs are short (3 to 12 steps) and include the one-time work:
the parameters' upload, the captures that prove templates. The steady state
that the targets name is measured apart: each program at two lengths (its
`--steps` or `--tokens`, SHORT and LONG below); per step = the difference of
the two runs' times / the difference of the lengths, eager and live alike,
in `--rounds` rounds (medians, and the range of the per-round ratios). One
eager and one live process per example run main() on demand (see
timed_example.py, GENIE_BENCH_FIFOS) after a warm-up run at each length,
taking turns: a round runs one side at both lengths, then the other (which
side first alternates), a few seconds in all. This machine's speed moves
by up to 2x within minutes (README, Benchmarks); when each side ran its
runs in processes of their own, seconds apart, a round's ratio said as much
about those moments as about genie. Both lengths are past
the captures that prove the templates and their first checks: a template
with a T is checked against a capture after 16 calls, then after twice as
many each time up to every 256 (templates.py, _RECHECK), and a check
captures the call op by op. Between SHORT and LONG the checks at calls 64
and 128 fall, more than the one per 256 calls of a longer run.

Beside each steady-state ratio: the CPU time per step, from the same runs,
as the difference of the two lengths' per-run CPU (medians over the
rounds, read in the program's process, see timed_example.py): eager's, and live's
split into the program, genie run (the program's parent) and the runtime.
On a machine with few cores the three live processes compete for them: live
can keep within 1.1x only where their CPU per step, added, fits the cores
beside each other.

For the decode loop it also prints, per decode step after warm-up (the
difference between runs with its two token counts): round trips, steps sent
as one RunCycle, and bytes on the wire against what must travel (the token id
up, the materialized token down).

    /usr/bin/python3 bench/live_vs_eager.py [--genie build/cli/genie] [--device cpu]
"""
import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["mlp_train", "gpt_decode", "cnn", "recsys", "two_tower"]
TARGET = {"gpt_decode": 1.0}
# The steady state: each program's length argument at two values.
# gpt_decode: past the template proofs and run-ahead warm-up, and long
# enough (with room in the model for them) that the difference is not noise.
LENGTH = {"gpt_decode": ("--tokens", 16, 400)}
EXTRA = {"gpt_decode": ("--max-len", "512")}
SHORT, LONG = 40, 200


def helper_cpu():
    """The runtime on the CPU that `genie run` keeps for itself and a local
    runtime on a machine of 2 or 3 CPUs (recorder::SplitCpus, GENIE_CPU_SPLIT),
    as `--pool local` would have it."""
    cpus = sorted(os.sched_getaffinity(0))
    split = os.environ.get("GENIE_CPU_SPLIT")
    if split != "0" and (2 <= len(cpus) <= 3 or split == "1" and len(cpus) >= 2):
        os.sched_setaffinity(0, {cpus[-1]})


def timing(stderr):
    """timed_example.py's report: the median seconds of a run, and how many runs it made."""
    return json.loads([l for l in stderr.splitlines() if l.startswith('{"seconds"')][-1])


def seconds(stderr):
    return timing(stderr)["seconds"]


def report(stderr):
    return json.loads([l for l in stderr.splitlines() if l.startswith('{"program"')][-1])


class OnDemand:
    """A timed_example.py process that runs the example's main() when asked
    (GENIE_BENCH_FIFOS): the steady state's eager and live processes live
    through all of an example's rounds and take turns run by run."""

    def __init__(self, cmd, env, tmp, tag):
        self.requests, self.answers = (os.path.join(tmp, f"{tag}.{end}") for end in ("in", "out"))
        for path in (self.requests, self.answers):
            os.mkfifo(path)
        self.err = open(os.path.join(tmp, f"{tag}.err"), "w+")
        self.proc = subprocess.Popen(cmd, env=dict(env, GENIE_BENCH_FIFOS=f"{self.requests},{self.answers}"),
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        # Opened read-write so that neither open waits for the other side.
        self.to = os.open(self.requests, os.O_RDWR)
        self.back = os.open(self.answers, os.O_RDWR)
        self.pending = b""

    def run(self, *args):
        """One main() with `args` appended: timed_example.py's JSON for it."""
        os.write(self.to, (" ".join(args) + "\n").encode())
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.back], [], [], 1.0)
            if ready:
                self.pending += os.read(self.back, 1 << 16)
            elif self.proc.poll() is not None:
                self.err.seek(0)
                sys.exit(f"{' '.join(self.proc.args)} exited with status {self.proc.returncode}:\n"
                         f"{self.err.read()[-4000:]}")
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        os.close(self.to)  # end of file for the process, which exits
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.back)
        self.err.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--genie", default=str(ROOT / "build" / "cli" / "genie"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--device", default="cpu", help="the runtime's device")
    p.add_argument("--rounds", type=int, default=9,
                   help="steady-state rounds (each runs eager and live at both lengths, in turn)")
    p.add_argument("--steps", type=int, nargs=2, default=(SHORT, LONG), metavar=("SHORT", "LONG"),
                   help="the two lengths (--steps) of the steady-state runs, gpt_decode aside")
    p.add_argument("--examples", nargs="+", choices=EXAMPLES, default=EXAMPLES, metavar="NAME",
                   help=f"which examples to time (default: all of {', '.join(EXAMPLES)})")
    p.add_argument("--serve-args", default="", metavar="ARGS",
                   help="more arguments for the runtime, as one string (\"--run-ahead-steps 1\")")
    args = p.parse_args()

    serve = subprocess.Popen([args.genie, "serve", "--listen", "127.0.0.1:0", "--device", args.device,
                              "--log-level", "warn", *args.serve_args.split()], stdout=subprocess.PIPE, text=True,
                             preexec_fn=helper_cpu)
    address = serve.stdout.readline().split()[-1]
    timed = str(ROOT / "bench" / "timed_example.py")
    whole, ratios = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "genie.yaml"
            cfg.write_text(f"pools:\n  bench:\n    runtimes:\n      - {{address: {address}}}\n")
            live = [args.genie, "run", "--pool", "bench", "--config", str(cfg), "--json", args.python]
            print(f"runtime {address} on {args.device}")
            print(f"{'example':<11} {'eager ms':>9} {'live ms':>9} {'ratio':>6} {'target':>6}  same output")
            for name in args.examples:
                program = str(ROOT / "examples" / f"{name}.py")
                eager = subprocess.run([args.python, timed, program, "--device", "cpu"], capture_output=True,
                                       text=True, check=True)
                r = subprocess.run([*live, timed, program], capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(r.stderr)
                eager_ms, live_ms = seconds(eager.stderr) * 1e3, seconds(r.stderr) * 1e3
                whole.append(live_ms / eager_ms)
                print(f"{name:<11} {eager_ms:>9.1f} {live_ms:>9.1f} {live_ms / eager_ms:>6.2f} "
                      f"{TARGET.get(name, 1.1):>6.1f}  {'yes' if r.stdout == eager.stdout else 'NO'}")

            print(f"\nsteady state, per step ({args.steps[0]} and {args.steps[1]} steps; gpt_decode: tokens "
                  f"{LENGTH['gpt_decode'][1]} and {LENGTH['gpt_decode'][2]}; medians of {args.rounds} rounds, "
                  f"eager and live in turn)")
            print(f"{'example':<11} {'eager ms':>9} {'live ms':>9} {'ratio':>6} {'range':>11} {'target':>6}  "
                  f"CPU ms per step: eager; live: program + genie run + runtime")
            for name in args.examples:
                program = str(ROOT / "examples" / f"{name}.py")
                flag, short, long = LENGTH.get(name, ("--steps", *args.steps))
                per = {"eager": [], "live": []}
                cpu = {"eager": [], "program": [], "genie": [], "runtime": []}
                sides = {
                    "eager": OnDemand([args.python, timed, program, "--device", "cpu"], dict(os.environ), tmp,
                                      f"{name}-eager"),
                    "live": OnDemand([*live, timed, program],
                                     dict(os.environ, GENIE_BENCH_PROCESSES=f"genie=PARENT,runtime={serve.pid}"),
                                     tmp, f"{name}-live"),
                }
                try:
                    for side in sides.values():  # warm-up: parameters up, templates proven
                        for n in (short, long):
                            side.run(flag, str(n), *EXTRA.get(name, ()))
                    for i in range(args.rounds):
                        order = ("eager", "live") if i % 2 == 0 else ("live", "eager")
                        for mode in order:
                            got = {n: sides[mode].run(flag, str(n), *EXTRA.get(name, ())) for n in (short, long)}

                            def step(read):
                                """ms per step of a figure `read` takes from a run's JSON."""
                                return (read(got[long]) - read(got[short])) / (long - short) * 1e3
                            per[mode].append(step(lambda r: r["seconds"]))
                            if mode == "eager":
                                cpu["eager"].append(step(lambda r: r["cpu"]))
                            else:
                                cpu["program"].append(step(lambda r: r["cpu"]))
                                cpu["genie"].append(step(lambda r: r["cpu_of"]["genie"]))
                                cpu["runtime"].append(step(lambda r: r["cpu_of"]["runtime"]))
                finally:
                    for side in sides.values():
                        side.close()
                e, l_ = statistics.median(per["eager"]), statistics.median(per["live"])
                each = [b / a for a, b in zip(per["eager"], per["live"])]
                ratios.append(l_ / e)
                c = {k: statistics.median(v) for k, v in cpu.items()}
                print(f"{name:<11} {e:>9.2f} {l_:>9.2f} {l_ / e:>6.2f} {min(each):>5.2f}-{max(each):<5.2f} "
                      f"{TARGET.get(name, 1.1):>6.1f}  {c['eager']:.2f}; {c['program']:.2f} + {c['genie']:.2f} + "
                      f"{c['runtime']:.2f}")

            if "gpt_decode" in args.examples:
                program = str(ROOT / "examples" / "gpt_decode.py")
                runs = {}
                _, short, long = LENGTH["gpt_decode"]
                for tokens in (short, long):
                    r = subprocess.run([*live, program, "--tokens", str(tokens), *EXTRA["gpt_decode"]],
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        sys.exit(r.stderr)
                    runs[tokens] = report(r.stderr)
                steps = long - short
                per = {k: (runs[long][k] - runs[short][k]) / steps
                       for k in ("round_trips", "bytes_up", "bytes_down", "cycles")}
                needed = 8 + 8  # an int64 token id up, an int64 token down
                wire = per["bytes_up"] + per["bytes_down"]
                print(f"gpt_decode per decode step (tokens {short} to {long}): {per['round_trips']:.2f} round trips, "
                      f"{per['cycles']:.2f} cycles; bytes up {per['bytes_up']:.1f}, down {per['bytes_down']:.1f}: "
                      f"{wire / needed:.2f}x the {needed} bytes of token ids and materialized values (target <= 2x)")
    finally:
        serve.terminate()
        serve.wait()
    print(f"median live/eager over the examples: whole runs {statistics.median(whole):.2f}x, "
          f"steady state {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()

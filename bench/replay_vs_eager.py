"""Steady-state replay time of each example against eager PyTorch on the
same machine, in one command.

For each example: eager = the median wall time of the program's main() run
in-process with `--device cpu` (after one warm-up run; interpreter start-up
and torch's import excluded). Replay = the time `genie run` spends on all of
the trace's segments (client wall time, round trips included) in the last of
3 repeats against one `genie serve` on loopback. Target (issue 3): replay at
most 1.0x eager.

    /usr/bin/python3 bench/replay_vs_eager.py [--genie build/cli/genie] [--device cpu]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["mlp_train", "gpt_decode", "cnn", "recsys", "two_tower"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--genie", default=str(ROOT / "build" / "cli" / "genie"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--device", default="cpu", help="the runtime's device")
    p.add_argument("--rtol", default="1e-4")
    p.add_argument("--atol", default="1e-5")
    args = p.parse_args()

    serve = subprocess.Popen([args.genie, "serve", "--listen", "127.0.0.1:0", "--device", args.device,
                              "--log-level", "warn"], stdout=subprocess.PIPE, text=True)
    address = serve.stdout.readline().split()[-1]
    ratios = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "genie.yaml"
            cfg.write_text(f"pools:\n  bench:\n    runtimes:\n      - {{address: {address}}}\n")
            print(f"runtime {address} on {args.device}")
            print(f"{'example':<11} {'segments':>8} {'ops':>6} {'eager ms':>9} {'replay ms':>10} {'ratio':>6}  verified")
            for name in EXAMPLES:
                program = str(ROOT / "examples" / f"{name}.py")
                trace = os.path.join(tmp, f"{name}.gtrace")
                subprocess.run([args.genie, "record", "-o", trace, args.python, program], check=True,
                               capture_output=True)
                eager = subprocess.run([args.python, str(ROOT / "bench" / "timed_example.py"), program, "--device",
                                        "cpu"], capture_output=True, text=True, check=True)
                eager_ms = json.loads(eager.stderr.strip().splitlines()[-1])["seconds"] * 1e3
                r = subprocess.run([args.genie, "run", "--pool", "bench", "--config", str(cfg), trace, "--repeat", "3",
                                    "--json", "--rtol", args.rtol, "--atol", args.atol], capture_output=True, text=True)
                if not r.stdout.strip():
                    sys.exit(r.stderr)
                out = json.loads(r.stdout)
                replay_ms = out["total_segment_ms"]
                ratios.append(replay_ms / eager_ms)
                print(f"{name:<11} {out['segments']:>8} {out['ops']:>6} {eager_ms:>9.1f} {replay_ms:>10.1f} "
                      f"{replay_ms / eager_ms:>6.2f}  {'ok' if out['ok'] else 'MISMATCH'} "
                      f"(max abs err {out['max_abs_error']:.2g})")
    finally:
        serve.terminate()
        serve.wait()
    print(f"median replay/eager over the examples: {statistics.median(ratios):.2f}x (target <= 1.0)")


if __name__ == "__main__":
    main()

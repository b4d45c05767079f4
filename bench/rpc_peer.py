"""Genie against the peer a user would pick instead: the model resident in a
torch.distributed.rpc server on loopback, one rpc_sync per step.

For each workload of bench/peer_workloads.py (decode, train, classify), in
one command:
- eager: the steps run in-process on the CPU (the floor neither remote way
  can beat on this machine);
- rpc: a server process (TensorPipe, loopback) builds the workload and runs
  one step per rpc_sync; the client sends the request and times the call;
- genie: the workload's program under `genie run` against one `genie serve`
  on loopback (the runtime on the CPU).
Each figure is the median step time after warm-up. Target (issue 5): genie
at or below rpc.

    /usr/bin/python3 bench/rpc_peer.py [--genie build/cli/genie] [--steps 200]
"""
import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import peer_workloads  # noqa: E402

_state = None  # the server's workload


def _start(workload, steps):
    global _state
    _state = peer_workloads.WORKLOADS[workload]("cpu", steps)


def _step(request):
    return _state.step(request)


def _server(port):
    import torch.distributed.rpc as rpc
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    rpc.init_rpc("server", rank=0, world_size=2)
    rpc.shutdown()  # serves until the client shuts down too


def rpc_medians(workloads, steps):
    import torch.distributed.rpc as rpc
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_server, args=(port,))
    server.start()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    rpc.init_rpc("client", rank=1, world_size=2)
    medians = {}
    try:
        for name in workloads:
            rpc.rpc_sync("server", _start, args=(name, steps))
            w = peer_workloads.WORKLOADS[name]("cpu", steps)  # only for its requests
            request = w.first_request()
            times = []
            for i in range(peer_workloads.WARMUP + steps):
                start = time.perf_counter()
                reply = rpc.rpc_sync("server", _step, args=(request,))
                if i >= peer_workloads.WARMUP:
                    times.append(time.perf_counter() - start)
                request = w.next_request(reply)
            medians[name] = statistics.median(times) * 1e3
    finally:
        rpc.shutdown()
        server.join()
    return medians


def _rpc_client(workloads, steps, out):
    out.send(rpc_medians(workloads, steps))


def rpc_medians_apart(workloads, steps):
    """rpc_medians in a process of its own, gone before genie is timed: after
    rpc.shutdown(), TensorPipe leaves a thread spinning in the process that
    ran the client (a full core of this 2-core machine, measured over 3 idle
    seconds), which slowed every genie figure measured after it."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    client = ctx.Process(target=_rpc_client, args=(workloads, steps, send))
    client.start()
    medians = receive.recv()
    client.join()
    return medians


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--genie", default=str(ROOT / "build" / "cli" / "genie"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    workloads = sorted(peer_workloads.WORKLOADS)
    script = str(ROOT / "bench" / "peer_workloads.py")

    def median_of(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
        return json.loads(r.stdout.splitlines()[-1])["median_step_ms"]

    eager = {w: median_of([args.python, script, "--workload", w, "--device", "cpu", "--steps", str(args.steps)])
             for w in workloads}
    peer = rpc_medians_apart(workloads, args.steps)
    serve = subprocess.Popen([args.genie, "serve", "--listen", "127.0.0.1:0", "--device", "cpu", "--log-level", "warn"],
                             stdout=subprocess.PIPE, text=True)
    try:
        address = serve.stdout.readline().split()[-1]
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "genie.yaml"
            cfg.write_text(f"pools:\n  bench:\n    runtimes:\n      - {{address: {address}}}\n")
            live = [args.genie, "run", "--pool", "bench", "--config", str(cfg), args.python, script]
            genie = {w: median_of([*live, "--workload", w, "--steps", str(args.steps)]) for w in workloads}
    finally:
        serve.terminate()
        serve.wait()

    print(f"median step ms after {peer_workloads.WARMUP} warm-up steps, {args.steps} timed; runtime and rpc server "
          "on this machine's CPU")
    print(f"{'workload':<9} {'eager':>7} {'rpc':>7} {'genie':>7} {'genie/rpc':>10}  target")
    for w in workloads:
        print(f"{w:<9} {eager[w]:>7.3f} {peer[w]:>7.3f} {genie[w]:>7.3f} {genie[w] / peer[w]:>10.2f}  <= 1.0")


if __name__ == "__main__":
    main()

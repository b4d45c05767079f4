"""Timed workloads for bench/capture_overhead.py: builds a model, then times
only its loop (interpreter start-up and torch's import, which dwarf capture
on some machines, are outside the timing) and prints the seconds as JSON.

    python3 bench/capture_workloads.py --workload train --device cpu
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from gpt_decode import GPT  # noqa: E402
from mlp_train import MLP  # noqa: E402


def train(device, steps):
    torch.manual_seed(0)
    model = MLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64, 32).to(device)
    y = torch.randint(0, 5, (64,)).to(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
    return time.perf_counter() - start


def decode(device, steps):
    torch.manual_seed(0)
    model = GPT(max_len=steps + 8).to(device).eval()
    prompt = torch.tensor([[1, 17, 42, 7, 99]]).to(device)
    start = time.perf_counter()
    with torch.no_grad():
        logits, cache = model(prompt)
        for _ in range(steps):
            token = logits[0, -1].argmax().item()
            logits, cache = model(torch.tensor([[token]]).to(device), cache)
    return time.perf_counter() - start


WORKLOADS = {"train": train, "decode": decode}

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    print(json.dumps({"loop_seconds": WORKLOADS[args.workload](args.device, args.steps)}))

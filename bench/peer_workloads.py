"""The steps that bench/rpc_peer.py times, written once for both sides: a
program under `genie run` calls them on "remote_accelerator", and the
torch.distributed.rpc server calls them on its own CPU for each rpc_sync.

Each workload is `make(device)` -> state, then `step(state, request)` ->
reply, with requests and replies that are what must cross the wire:
- decode: the GPT decoder of examples/gpt_decode.py; request the last token
  id, reply the next one (its KV cache stays with the state).
- train: one Adam step of examples/mlp_train.py's MLP on a batch of 64;
  request the batch, reply the loss.
- classify: examples/cnn.py's CNN in eval mode on a batch of 8 images;
  request the images, reply the predicted classes.

    python3 bench/peer_workloads.py --workload decode --steps 200 [--device cpu]

prints the median step time in ms as JSON (the way `genie run` times it).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from cnn import ConvNet  # noqa: E402
from gpt_decode import GPT  # noqa: E402
from mlp_train import MLP  # noqa: E402

WARMUP = 10  # steps before timing: first captures, template proofs, uploads


class Decode:
    def __init__(self, device, steps):
        torch.manual_seed(0)
        self.device = device
        self.model = GPT(max_len=steps + WARMUP + 8).to(device).eval()
        self.cache = None
        self.prompt = [1, 17, 42, 7, 99]

    def first_request(self):
        return self.prompt

    def step(self, tokens):
        with torch.no_grad():
            logits, self.cache = self.model(torch.tensor([tokens], device=self.device), self.cache)
            return logits[0, -1].argmax().item()

    def next_request(self, reply):
        return [reply]


class Train:
    def __init__(self, device, steps):
        torch.manual_seed(0)
        self.device = device
        self.model = MLP().to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x = torch.randn(64, 32)
        self.y = torch.randint(0, 5, (64,))

    def first_request(self):
        return self.x, self.y

    def step(self, batch):
        x, y = (t.to(self.device) for t in batch)
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.item()

    def next_request(self, reply):
        return self.x, self.y


class Classify:
    def __init__(self, device, steps):
        torch.manual_seed(0)
        self.device = device
        self.model = ConvNet().to(device).eval()
        self.images = torch.randn(8, 3, 16, 16)

    def first_request(self):
        return self.images

    def step(self, images):
        with torch.no_grad():
            return self.model(images.to(self.device)).argmax(dim=1).tolist()

    def next_request(self, reply):
        return self.images


WORKLOADS = {"decode": Decode, "train": Train, "classify": Classify}


def median_step_ms(workload, device, steps):
    w = WORKLOADS[workload](device, steps)
    request = w.first_request()
    times = []
    for i in range(WARMUP + steps):
        start = time.perf_counter()
        reply = w.step(request)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
        request = w.next_request(reply)
    return statistics.median(times) * 1e3


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    print(json.dumps({"median_step_ms": median_step_ms(args.workload, args.device, args.steps)}))

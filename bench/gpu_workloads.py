"""The GPU machine's workloads for bench/gpu_live_vs_eager.py, one program
for both sides: `--device cuda` runs it eagerly on the local GPU,
`--device remote_accelerator` under `genie run` against `genie serve --device cuda`.

- gpt2: transformers' GPT2LMHeadModel with GPT-2 small's shape and random
  weights; a prompt of 8 tokens, then greedy decoding with its KV cache, one
  `.item()` per step. Times each decode step.
- resnet50: torchvision's ResNet-50 in eval mode on a batch of 8 images of
  224x224 (uploaded once); each step runs the model and pulls the predicted
  classes with `.tolist()`. The same images at every step: genie's runtime
  runs the next step ahead while the program takes the answer.
- resnet50_fresh: the same model on new images at every step, as a server
  classifying requests would: each step's batch is drawn on the host before
  the step's timer starts, and the step moves it to the device (4.8 MB: a
  host-to-device copy in eager, an upload through genie run to the runtime
  in live mode), runs the model and pulls the classes. Nothing runs ahead.
- resnet50_amp: resnet50 under bfloat16 autocast of its device
  (`torch.autocast("cuda")` eagerly, `torch.autocast("remote_accelerator")`
  live): convolutions and the classifier in bfloat16.

Prints the median step time in ms after warm-up, and the last step's result
(the same on both sides), as JSON.

    python3 bench/gpu_workloads.py --workload gpt2 --device cuda [--steps 100]
"""
import argparse
import json
import statistics
import time

import torch

WARMUP = 10


def gpt2(device, steps):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval().to(device)
    ids = torch.tensor([[464, 2068, 7586, 21831, 18045, 625, 262, 16931]], device=device)
    times, tokens = [], []
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        token = out.logits[0, -1].argmax().item()
        for i in range(WARMUP + steps):
            start = time.perf_counter()
            out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[0, -1].argmax().item()
            if i >= WARMUP:
                times.append(time.perf_counter() - start)
            tokens.append(token)
    return times, tokens[-8:]


def resnet50(device, steps):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    images = torch.randn(8, 3, 224, 224).to(device)
    times = []
    with torch.no_grad():
        for i in range(WARMUP + steps):
            start = time.perf_counter()
            classes = model(images).argmax(dim=1).tolist()
            if i >= WARMUP:
                times.append(time.perf_counter() - start)
    return times, classes


def resnet50_fresh(device, steps):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    times = []
    with torch.no_grad():
        for i in range(WARMUP + steps):
            images = torch.randn(8, 3, 224, 224)
            start = time.perf_counter()
            classes = model(images.to(device)).argmax(dim=1).tolist()
            if i >= WARMUP:
                times.append(time.perf_counter() - start)
    return times, classes


def resnet50_amp(device, steps):
    with torch.autocast("cuda" if device == "cuda" else device, dtype=torch.bfloat16):
        return resnet50(device, steps)


WORKLOADS = {"gpt2": gpt2, "resnet50": resnet50, "resnet50_fresh": resnet50_fresh, "resnet50_amp": resnet50_amp}

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    times, result = WORKLOADS[args.workload](args.device, args.steps)
    print(json.dumps({"median_step_ms": statistics.median(times) * 1e3, "result": result}))

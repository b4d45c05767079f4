"""Greedy decoding with a GPT-style decoder and a KV cache: one prefill of the
prompt, then one `.item()` per generated token.

    genie record python3 examples/gpt_decode.py
    python3 examples/gpt_decode.py --device cpu
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, past):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        if t > 1:
            mask = torch.triu(torch.full((t, t), float("-inf"), device=x.device), diagonal=1)
            att = att + mask
        y = F.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).contiguous().view(b, t, d)
        return self.proj(y), (k, v)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, past):
        a, present = self.attn(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), present


class GPT(nn.Module):
    def __init__(self, vocab=128, d=64, heads=4, layers=2, max_len=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx, cache=None):
        start = 0 if cache is None else cache[0][0].shape[2]
        pos = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            present.append(kv)
        return self.head(self.ln_f(x)), present


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--tokens", type=int, default=12)
    p.add_argument("--max-len", type=int, default=64, help="positions the model has: the prompt's 5 plus the tokens")
    args = p.parse_args()
    torch.manual_seed(0)

    model = GPT(max_len=args.max_len).to(args.device).eval()
    prompt = torch.tensor([[1, 17, 42, 7, 99]], device=args.device)
    with torch.no_grad():
        logits, cache = model(prompt)
        generated = []
        for _ in range(args.tokens):
            token = logits[0, -1].argmax().item()
            generated.append(token)
            logits, cache = model(torch.tensor([[token]], device=args.device), cache)
    print("generated", generated)
    print("last logits", [f"{v:.5f}" for v in logits[0, -1, :4].tolist()])


if __name__ == "__main__":
    main()

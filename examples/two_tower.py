"""A two-tower image/text model (a CLIP in miniature): a CNN image encoder and
a Transformer text encoder, joined late by a contrastive similarity; trained a
few steps with AdamW, then used to match images to captions.

    genie record python3 examples/two_tower.py
    python3 examples/two_tower.py --device cpu
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class ImageTower(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.proj = nn.Linear(32, d)

    def forward(self, images):
        return self.proj(self.conv(images).flatten(1))


class TextTower(nn.Module):
    def __init__(self, d, vocab=200, max_len=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(max_len, 1, d) * 0.02)
        self.encoder = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.1)
        self.proj = nn.Linear(d, d)

    def forward(self, tokens):  # tokens: [seq, batch]
        x = self.tok(tokens) + self.pos[: tokens.shape[0]]
        return self.proj(self.encoder(x).mean(dim=0))


class TwoTower(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.image = ImageTower(d)
        self.text = TextTower(d)
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, images, tokens):
        a = F.normalize(self.image(images), dim=-1)
        b = F.normalize(self.text(tokens), dim=-1)
        return self.scale.exp() * a @ b.t()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)

    model = TwoTower().to(args.device)
    images = torch.randn(8, 3, 32, 32).to(args.device)
    tokens = torch.randint(0, 200, (12, 8)).to(args.device)
    target = torch.arange(8, device=args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(args.steps):
        opt.zero_grad()
        logits = model(images, tokens)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f}")
    model.eval()
    with torch.no_grad():
        match = model(images, tokens).argmax(dim=1)
    print("matches", match.tolist())


if __name__ == "__main__":
    main()

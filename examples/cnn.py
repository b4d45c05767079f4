"""A small CNN (conv, batch norm, pooling) trained with SGD momentum, then
evaluated.

    genie record python3 examples/cnn.py
    python3 examples/cnn.py --device cpu
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(32, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    torch.manual_seed(0)

    model = ConvNet().to(args.device)
    images = torch.randn(16, 3, 16, 16, device=args.device)
    labels = torch.randint(0, 10, (16,), device=args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(args.steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f}")

    model.eval()
    with torch.no_grad():
        probs = F.softmax(model(images), dim=1)
    print("predictions", probs.argmax(dim=1).tolist())
    print("confidence", f"{probs.max(dim=1).values.mean().item():.6f}")
    print("running mean", [f"{v:.5f}" for v in model.features[1].running_mean[:4].cpu().tolist()])


if __name__ == "__main__":
    main()

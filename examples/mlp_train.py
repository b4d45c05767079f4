"""Trains a small MLP classifier with Adam, then fine-tunes it with SGD momentum.

    genie record python3 examples/mlp_train.py      # on remote_accelerator
    python3 examples/mlp_train.py --device cpu      # the same, eagerly
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d_in=32, hidden=64, classes=5):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.gelu(self.fc1(x))
        x = x + torch.relu(self.fc2(x))  # residual
        return self.head(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)

    model = MLP().to(args.device)
    x = torch.randn(64, 32).to(args.device)
    y = torch.randint(0, 5, (64,), device=args.device)

    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(args.steps):
        adam.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        adam.step()
        print(f"adam step {step} loss {loss.item():.6f}")

    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(args.steps):
        sgd.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        sgd.step()
        print(f"sgd step {step} loss {loss.item():.6f}")

    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean()
    print(f"accuracy {accuracy.item():.4f}")
    print("first logits", [f"{v:.5f}" for v in model(x)[0].tolist()])


if __name__ == "__main__":
    main()

"""A DLRM-style recommender: nn.EmbeddingBag tables for sparse features, an
nn.Embedding for the item, pairwise dot-product feature interactions and an
MLP on top; trained with Adam on click labels.

    genie record python3 examples/recsys.py
    python3 examples/recsys.py --device cpu
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Recommender(nn.Module):
    def __init__(self, tables=(1000, 500, 200), items=300, d=16, dense_in=8):
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(n, d, mode="sum") for n in tables)
        self.item = nn.Embedding(items, d)
        self.bottom = nn.Sequential(nn.Linear(dense_in, 32), nn.ReLU(), nn.Linear(32, d))
        features = len(tables) + 2
        self.top = nn.Sequential(nn.Linear(features * (features - 1) // 2 + d, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, dense, sparse, offsets, item):
        vectors = [self.bottom(dense), self.item(item)]
        vectors += [bag(idx, off) for bag, idx, off in zip(self.bags, sparse, offsets)]
        z = torch.stack(vectors, dim=1)
        inter = torch.bmm(z, z.transpose(1, 2))
        i, j = torch.triu_indices(z.shape[1], z.shape[1], offset=1)
        pairs = inter[:, i, j]
        return self.top(torch.cat([vectors[0], pairs], dim=1)).squeeze(1)


def batch(device, n=32, tables=(1000, 500, 200)):
    dense = torch.randn(n, 8)
    sparse, offsets = [], []
    for size in tables:
        lengths = torch.randint(1, 4, (n,))
        offsets.append(torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]]).to(device))
        sparse.append(torch.randint(0, size, (int(lengths.sum()),)).to(device))
    item = torch.randint(0, 300, (n,))
    clicks = (torch.rand(n) < 0.3).float()
    return dense.to(device), sparse, offsets, item.to(device), clicks.to(device)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="remote_accelerator")
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)

    model = Recommender().to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(args.steps):
        dense, sparse, offsets, item, clicks = batch(args.device)
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(dense, sparse, offsets, item), clicks)
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f}")
    with torch.no_grad():
        dense, sparse, offsets, item, _ = batch(args.device)
        scores = torch.sigmoid(model(dense, sparse, offsets, item))
    print("top items", scores.topk(5).indices.tolist())


if __name__ == "__main__":
    main()

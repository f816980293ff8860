"""Image-folder throughput: losslab streaming (DataLoader, 2 workers) against a hand-written DataLoader loop over
the same torchvision ImageFolder, and losslab's in-memory path against its streaming path.

Writes a folder of small PNGs (default 10,000, 3x16x16, 10 classes) to a temporary directory, then alternates
the runs `--pairs` times in one process. Each run trains the same mlp for 2 epochs (batch 64, adam) with a
validation pass per epoch; the figure is the second epoch's time (workers already started, as in a long run).
Prints the median of the paired ratios (target: losslab streaming >= 0.95x the hand-written loop's throughput).
Run: .venv/bin/python benchmarks/bench_imagefolder.py [--images 10000] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset


def write_folder(root: str, images: int, classes: int = 10, size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for i in range(images):
        c = i % classes
        arr = np.clip(rng.normal(20 * c, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(os.path.join(root, f"class{c}", f"{i}.png"))


def hand_written(root: str, workers: int, epochs: int = 2) -> float:
    """The tutorial loop: ImageFolder + ToTensor + Normalize, DataLoader with persistent workers."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    data = ImageFolder(root, transform=transforms.Compose([transforms.ToTensor(),
                                                           transforms.Normalize([0.5] * 3, [0.25] * 3)]))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(42)).tolist()
    n_val = round(0.2 * len(data))
    train, val = Subset(data, sorted(perm[n_val:])), Subset(data, sorted(perm[:n_val]))
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    val_loader = DataLoader(val, batch_size=256, num_workers=workers, persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for xb, yb in val_loader:
                F.cross_entropy(model(xb), yb)
        times.append(time.perf_counter() - start)
    return times[-1]


def losslab_run(root: str, workers: int, budget: int, epochs: int = 2) -> float:
    from losslab.commands import classify
    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, TrainConfig
    from losslab.engine.events import Dispatcher
    from losslab.engine.problems import ClassificationProblem

    cfg = ClassifyConfig(data=ClassifyDataConfig(dataset="imagefolder", data_dir=root, workers=workers,
                                                 memory_budget=budget),
                         model=ModelConfig(name="mlp"), train=TrainConfig(epochs=epochs, batch_size=64, device="cpu"))
    cfg = cfg.resolved()
    result = classify.run(cfg, Dispatcher([]), ClassificationProblem(cfg))
    stamps = [r["elapsed_s"] for r in result.records]
    return stamps[-1] - stamps[-2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_folder(root, args.images)
        print(f"wrote {args.images} PNGs in {time.perf_counter() - start:.1f} s")
        train_images = args.images - round(0.2 * args.images)
        stream_ratio, memory_ratio = [], []
        for i in range(args.pairs):
            ref = hand_written(root, args.workers)
            streamed = losslab_run(root, args.workers, budget=1)
            memory = losslab_run(root, args.workers, budget=2**34)
            stream_ratio.append(ref / streamed)  # throughput ratio: same images per epoch
            memory_ratio.append(streamed / memory)
            print(f"pair {i + 1}: hand-written {train_images / ref:,.0f} img/s, losslab streamed "
                  f"{train_images / streamed:,.0f} img/s, losslab in memory {train_images / memory:,.0f} img/s")
        s, m = statistics.median(stream_ratio), statistics.median(memory_ratio)
        print(f"losslab streaming / hand-written DataLoader throughput: median {s:.3f} over {args.pairs} pairs "
              f"(target >= 0.95) {'OK' if s >= 0.95 else 'MISSED'}")
        print(f"losslab in memory / streaming throughput: median {m:.2f}x")


if __name__ == "__main__":
    main()

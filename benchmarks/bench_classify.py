"""Classification speed, two ratios measured in one run:

1. samples/s of losslab's loop (`classify`, digits, MLP, batch 64, per-epoch validation) against a
   hand-written PyTorch loop doing the same work over the same in-memory tensors (target >= 0.95x);
2. one epoch of losslab's data path (decoded once, normalised tensors, batches by index) against a
   DataLoader over torchvision's CIFAR10 with a per-sample ToTensor + Normalize transform (the tutorial way),
   on CIFAR-10-format files this script writes (target >= 3x faster).

Run: .venv/bin/python benchmarks/bench_classify.py [--repeats 9] [--epochs 10] [--cifar-per-batch 2000]
(On the shared 2-core machine the ratio moves by about ±6% between runs; repeat it before trusting one figure.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from losslab.commands import classify
from losslab.components.datasets import load_classification
from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, OptimConfig, TrainConfig
from losslab.engine.events import Dispatcher
from losslab.engine.problems import ClassificationProblem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' CIFAR-format file writer
from fakedata import write_cifar10  # noqa: E402
from losslab.outputs.display import ProgressDisplay, classify_columns, make_console


def hand_written(data, epochs: int, batch: int = 64) -> float:
    """Train + per-epoch validation (loss and accuracy), as the tutorial writes it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    gen = torch.Generator().manual_seed(0)
    x, y, n = data.x_train, data.y_train, len(data.y_train)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(data.x_val)
            F.cross_entropy(out, data.y_val).item()
            (out.argmax(1) == data.y_val).float().mean().item()
    return time.perf_counter() - start


def ours(data, epochs: int) -> float:
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits"), model=ModelConfig("mlp", 128), optim=OptimConfig("adam"),
                         train=TrainConfig(epochs=epochs, batch_size=64, device="cpu"))
    cfg = cfg.resolved()
    display = ProgressDisplay(make_console(), classify_columns(), quiet=True)
    result = classify.run(cfg, Dispatcher([display]), ClassificationProblem(cfg, data))
    return result.elapsed_s


def dataloader_epoch(root: Path, batch: int = 64) -> float:
    from torchvision import datasets, transforms

    from losslab.components.datasets import _cifar10_class

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    ds = _cifar10_class()(str(root), train=True, transform=tf)
    assert isinstance(ds, datasets.CIFAR10)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True)
    start = time.perf_counter()
    for _batch in loader:
        pass
    return time.perf_counter() - start


def losslab_epoch(data, batch: int = 64) -> float:
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    perm = torch.randperm(len(data.y_train), generator=gen)
    for i in range(0, len(perm), batch):
        idx = perm[i:i + batch]
        _xb, _yb = data.x_train[idx], data.y_train[idx]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cifar-per-batch", type=int, default=2000, help="images per data_batch file (5 files)")
    args = ap.parse_args()

    data = load_classification(ClassifyDataConfig("digits"))
    hand_written(data, 1), ours(data, 1)  # warm up
    ref, mine = [], []
    for _ in range(args.repeats):
        ref.append(hand_written(data, args.epochs))
        mine.append(ours(data, args.epochs))
    n = len(data.y_train) * args.epochs
    ref_sps, our_sps = n / min(ref), n / min(mine)
    print(f"hand-written loop: {ref_sps:10,.0f} samples/s (best of {args.repeats}; median {n / statistics.median(ref):,.0f})")
    print(f"losslab classify:  {our_sps:10,.0f} samples/s (best of {args.repeats}; median {n / statistics.median(mine):,.0f})")
    ratio = our_sps / ref_sps
    print(f"throughput ratio losslab/hand-written: {ratio:.3f}  (target >= 0.95)  {'OK' if ratio >= 0.95 else 'MISSED'}")

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), per_batch=args.cifar_per_batch, test=args.cifar_per_batch // 5)
        start = time.perf_counter()
        cifar = load_classification(ClassifyDataConfig("cifar10", data_dir=tmp))
        decode = time.perf_counter() - start
        dl = min(dataloader_epoch(Path(tmp)) for _ in range(2))
        ll = min(losslab_epoch(cifar) for _ in range(3))
    images = 5 * args.cifar_per_batch
    print(f"CIFAR-10 format, {images} training images, batch 64:")
    print(f"  DataLoader + per-sample ToTensor/Normalize: {dl:.3f} s per epoch")
    print(f"  losslab in-memory batches:                 {ll:.3f} s per epoch (one-time decode and normalise {decode:.2f} s)")
    speedup = dl / ll
    print(f"data-path speed-up: {speedup:.1f}x  (target >= 3x)  {'OK' if speedup >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()

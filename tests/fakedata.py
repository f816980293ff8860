"""Write small datasets in the real on-disk formats torchvision reads (MNIST idx files, CIFAR-10 pickle
batches), so the real loading code can run offline in tests and benchmarks."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, type 0x08 = uint8, ndim), big-endian int32 sizes, then the raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root: Path, folder: str = "MNIST", train: int = 60, test: int = 20, seed: int = 0) -> Path:
    """`root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` with learnable images: each class
    lights up its own 4-pixel-wide band of rows, plus noise."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c: 6 + 2 * c, :] = 250
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """`root/cifar-10-batches-py/` with data_batch_1..5, test_batch and batches.meta, as the official
    python pickles lay them out: 'data' is uint8 (n, 3072) in channel-major order, 'labels' a list."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, name: str) -> None:
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 80, size=(n, 3, 32, 32)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, c % 3, 3 * c: 3 * c + 3, :] = 255
        entry = {"batch_label": name, "labels": labels.tolist(), "data": images.reshape(n, 3072),
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)

    for i in range(1, 6):
        batch(per_batch, f"data_batch_{i}")
    batch(test, "test_batch")
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, fh)
    return folder

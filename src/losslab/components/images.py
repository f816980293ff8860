"""A folder of images, one subfolder per class, read with torchvision's ImageFolder.

Images are converted to one mode (RGB, or L with --grayscale: mixed modes are fine), resized to one size
(--image-size, default the first image's), turned into float tensors in [0, 1] and normalised per channel with
the training split's mean and standard deviation (computed in float64, in file order, the same way for both
paths). Small folders are decoded once into memory; folders whose decoded tensors would exceed
--memory-budget are streamed through a DataLoader with --workers processes (engine.batches.Streamed).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from losslab.errors import USER_ERRORS, ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_BAD = "losslab-bad-image::"


class BadImage(Exception):
    """An image that cannot be decoded; its one-argument form survives a DataLoader worker's re-raise."""


def bad_image_message(exc: BaseException) -> Optional[str]:
    """The `path: reason` of a BadImage, also when a DataLoader worker wrapped it into its traceback text."""
    m = re.search(re.escape(_BAD) + r"(.*?)::END", str(exc), re.S)
    return m.group(1) if m else None


def class_folders(root: str) -> list[str]:
    """The class subfolders of `root`: every folder but hidden ones (`.ipynb_checkpoints`, `.git`)."""
    return sorted(d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith("."))


def image_files(class_dir: str) -> list[str]:
    """The images under a class folder, in torchvision's order (by folder path, then file name): hidden files and
    folders left out, and a linked folder followed only when it stays inside the class folder and was not
    visited before (a link loop, or a link into another class, would repeat or mislabel images)."""
    top = os.path.realpath(class_dir)
    seen: set[str] = set()
    found: list[tuple[str, list[str]]] = []
    for folder, subfolders, files in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen or not (real == top or real.startswith(top + os.sep)):
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found.append((folder, sorted(f for f in files if not f.startswith(".")
                                     and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)))
    return [os.path.join(folder, f) for folder, files in sorted(found) for f in files]


def load_image(path: str, size: tuple[int, int], grayscale: bool, opener: Any = None) -> Any:
    """One image as training sees it: one mode (L or RGB), resized to `size` (height, width), a float tensor in
    [0, 1]; a file that cannot be decoded raises BadImage naming it."""
    import torch
    from torchvision.transforms.functional import pil_to_tensor, resize

    try:
        img = (opener or Images._open)(path).convert("L" if grayscale else "RGB")
        if (img.height, img.width) != tuple(size):
            img = resize(img, list(size))
        return pil_to_tensor(img).to(torch.float32).div_(255)
    except USER_ERRORS as exc:
        raise BadImage(f"{_BAD}{path}: {type(exc).__name__}: {exc}::END") from None


def check_folder(root: str, option: str) -> list[str]:
    """The class subfolders of `root`, or a one-line error saying what is wrong with the folder."""
    p = Path(root)
    if not p.is_dir():
        raise ConfigError(option, f"no such folder: {root}")
    classes = class_folders(root)
    if not classes:
        raise ConfigError(option, f"{root} has no class subfolders: put each class's images in its own subfolder "
                          "(DIR/cat/1.png, DIR/dog/2.png)")
    for c in classes:
        if not image_files(str(p / c)):
            raise ConfigError(option, f"class folder {p / c} has no image files ({', '.join(IMAGE_SUFFIXES)}; "
                              "hidden files are left out)")
    if len(classes) < 2:
        raise ConfigError(option, f"{root} has one class ({classes[0]}); a classifier needs at least two")
    return classes


def image_folder(root: str, loader: Any) -> Any:
    """torchvision's ImageFolder whose classes and files are those `class_folders` and `image_files` find."""
    from torchvision.datasets import ImageFolder

    class Folder(ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            classes = class_folders(directory)
            return classes, {c: i for i, c in enumerate(classes)}

        @staticmethod
        def make_dataset(directory: str, class_to_idx: dict[str, int], extensions: Any = None,
                         is_valid_file: Any = None, allow_empty: bool = False) -> list[tuple[str, int]]:
            return [(path, index) for c, index in sorted(class_to_idx.items(), key=lambda ci: ci[1])
                    for path in image_files(os.path.join(directory, c))]

    return Folder(root, loader=loader)


class Images:
    """torchvision's ImageFolder with one mode and size, as float tensors, optionally normalised; a file that
    cannot be decoded raises BadImage naming it."""

    def __init__(self, root: str, size: Optional[tuple[int, int]], grayscale: bool,
                 classes: Optional[Sequence[str]] = None):
        self.folder = image_folder(root, self._open)
        if classes is not None and list(self.folder.classes) != list(classes):
            raise ConfigError("--val-dir", f"{root} has classes {self.folder.classes}; the training folder has "
                              f"{list(classes)}")
        self.grayscale = grayscale
        self.size = size or self._first_size()
        self.mean: Any = None
        self.std: Any = None

    @staticmethod
    def _open(path: str) -> Any:
        from PIL import Image

        with open(path, "rb") as fh:
            img = Image.open(fh)
            img.load()
        return img

    def _first_size(self) -> tuple[int, int]:
        path = self.folder.samples[0][0]
        try:
            width, height = self._open(path).size
        except USER_ERRORS as exc:
            raise ConfigError("--data-dir", f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
        return height, width

    @property
    def classes(self) -> list[str]:
        return list(self.folder.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.grayscale else 3, *self.size)

    def __len__(self) -> int:
        return len(self.folder.samples)

    def targets(self) -> list[int]:
        return [t for _, t in self.folder.samples]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, target = self.folder.samples[i]
        x = load_image(path, self.size, self.grayscale, self.folder.loader)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x, target


@dataclass
class Split:
    """Which samples of an Images folder a split holds."""

    images: Images
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.images[self.indices[i]]

    def labels(self) -> Any:
        import torch

        targets = self.images.targets()
        return torch.tensor([targets[i] for i in self.indices], dtype=torch.int64)


def decode(split: Split, workers: int, chunk: int = 256) -> tuple[Any, Any]:
    """Every image of a split as one (N, C, H, W) tensor, in order, decoded by `workers` processes."""
    import torch

    loader = torch.utils.data.DataLoader(split, batch_size=chunk, shuffle=False, num_workers=workers)
    xs, ys = [], []
    for xb, yb in guarded(loader):
        xs.append(xb)
        ys.append(yb)
    return torch.cat(xs), torch.cat(ys)


def guarded(loader: Any) -> Any:
    """Iterate a loader over images, turning a BadImage (also from a worker) into a one-line ConfigError."""
    try:
        yield from loader
    except USER_ERRORS as exc:
        message = bad_image_message(exc)
        if message is None:
            raise
        raise ConfigError("--data-dir", f"cannot read image {message}") from None


def channel_stats(batches: Any) -> tuple[Any, Any]:
    """Per-channel mean and standard deviation over (N, C, H, W) batches, accumulated in float64 in order."""
    import torch

    total: Any = None
    squares: Any = None
    count = 0
    for xb, _ in batches:
        xd = xb.to(torch.float64)
        s, q = xd.sum(dim=(0, 2, 3)), xd.pow(2).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        squares = q if squares is None else squares + q
        count += xd.shape[0] * xd.shape[2] * xd.shape[3]
    mean = total / count
    var = (squares / count - mean.pow(2)) * count / max(1, count - 1)
    std = var.clamp_min(0).sqrt()
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return mean.to(torch.float32).view(-1, 1, 1), std.to(torch.float32).view(-1, 1, 1)

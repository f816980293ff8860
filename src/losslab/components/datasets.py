"""Classification dataset registry: each dataset is decoded once into tensors, split, normalised with
training-split statistics, and then batched by index from memory (no per-sample transform per epoch).

`digits` ships inside scikit-learn and `blobs` is generated from the seed: both work offline.
`mnist`, `fashion-mnist` and `cifar10` are read by torchvision's own dataset classes from `--data-dir`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from losslab.components.labels import class_indices
from losslab.components.registry import Registry
from losslab.errors import USER_ERRORS, ConfigError, describe
from losslab.objects import shown

if TYPE_CHECKING:
    import torch


DATASETS: Registry[Callable[..., "Raw"]] = Registry("dataset", "--dataset")


def default_data_dir() -> str:
    """$LOSSLAB_DATA, else ~/.cache/losslab/data: the torchvision root holding MNIST/, FashionMNIST/, ..."""
    return os.environ.get("LOSSLAB_DATA") or str(Path.home() / ".cache" / "losslab" / "data")


@dataclass
class Raw:
    """Decoded but unnormalised data; test split is None where the dataset has no official one."""

    x_train: "torch.Tensor"  # (N, C, H, W) or (N, F)
    y_train: "torch.Tensor"  # (N,) int64
    x_test: Optional["torch.Tensor"]
    y_test: Optional["torch.Tensor"]
    classes: list[str]
    features: Optional[list[str]] = None  # a table's feature column names (with a header row)
    target: Optional[str] = None  # and its label column's
    note: str = ""  # said after the data's description (e.g. files that are not the official release)


@dataclass
class ClassificationData:
    x_train: Optional["torch.Tensor"]  # None when streamed: `train_set` then yields the samples
    y_train: "torch.Tensor"
    x_val: Optional["torch.Tensor"]
    y_val: "torch.Tensor"
    classes: list[str]
    source: str
    split: str  # how the validation set was made
    train_set: Any = None  # a torch Dataset of normalised samples, when too large to decode at once
    val_set: Any = None
    shape: Optional[tuple[int, ...]] = None  # one sample's shape, when streamed
    mean: Any = None  # the normalisation applied to every sample: (x - mean) / std, from the training split
    std: Any = None
    features: Optional[list[str]] = None  # a table's feature column names (with a header row)
    target: Optional[str] = None  # and its label column's

    @property
    def streamed(self) -> bool:
        return self.x_train is None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.shape or ()) if self.x_train is None else tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --- embedded datasets ---------------------------------------------------------------------------

@DATASETS.register("digits", "8x8 handwritten digits shipped with scikit-learn (1,797 images, 10 classes)",
                   default_model="mlp", default_epochs=30, normalise="feature",
                   default_lr={"adam": 0.01, "adamw": 0.01})
def _digits(cfg: Any) -> Raw:
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Raw(x, y, None, None, [str(c) for c in bunch.target_names])


@DATASETS.register("blobs", "synthetic Gaussian clusters (--classes, --samples, --features, --class-sep, --imbalance)",
                   default_model="mlp", default_epochs=50)
def _blobs(cfg: Any) -> Raw:
    import torch

    g = torch.Generator().manual_seed(cfg.data_seed)
    k = cfg.classes
    ratio = cfg.imbalance or 1.0
    # class c gets a share proportional to ratio^(-c/(k-1)): the largest class is `ratio` times the smallest
    shares = [ratio ** (-c / (k - 1)) if k > 1 else 1.0 for c in range(k)]
    counts = [max(1, round(cfg.samples * s / sum(shares))) for s in shares]
    centers = torch.randn(k, cfg.features, generator=g) * cfg.class_sep
    y = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    x = centers[y] + torch.randn(len(y), cfg.features, generator=g)
    return Raw(x, y, None, None, [f"c{c}" for c in range(k)])


def _sklearn_table(loader: str) -> Callable[[Any], Raw]:
    def load(cfg: Any) -> Raw:
        import sklearn.datasets
        import torch

        bunch = getattr(sklearn.datasets, loader)()
        x = torch.as_tensor(bunch.data, dtype=torch.float32)
        y = torch.as_tensor(bunch.target, dtype=torch.int64)
        return Raw(x, y, None, None, [str(c) for c in bunch.target_names])
    return load


for _name, _loader, _about in (
        ("iris", "load_iris", "iris flowers shipped with scikit-learn (150 samples, 4 features, 3 species)"),
        ("wine", "load_wine", "wine cultivars shipped with scikit-learn (178 samples, 13 features, 3 classes)"),
        ("breast-cancer", "load_breast_cancer", "breast tumours shipped with scikit-learn (569 samples, 30 features, "
         "malignant/benign)")):
    # iris: 100 epochs leave the logistic model at 0.933 where scikit-learn's LogisticRegression reaches 1.000
    DATASETS.register(_name, _about, default_model="mlp", default_epochs=500 if _name == "iris" else 100,
                      default_lr={"adam": 0.01, "adamw": 0.01})(_sklearn_table(_loader))


@DATASETS.register("csv", "your table: --data FILE.csv with a label column (--target NAME, default the last) and "
                   "numeric feature columns (--features a,b,c, default all others)", default_model="mlp",
                   default_epochs=100, default_lr={"adam": 0.01, "adamw": 0.01})
def _csv(cfg: Any) -> Raw:
    import torch

    from losslab.components.tables import is_number, read_table

    table = read_table(cfg.csv, "--data")
    if table.width < 2 and cfg.columns is None:
        raise ConfigError("--data", f"{cfg.csv} has one column; need feature column(s) and a label column")
    t = table.column(cfg.target, "--target") if cfg.target is not None else table.width - 1
    cols = ([table.column(n, "--features") for n in cfg.columns] if cfg.columns is not None
            else [c for c in range(table.width) if c != t])
    if t in cols:
        raise ConfigError("--features", f"column {table.name(t)!r} is the label; it cannot also be a feature")
    x = torch.tensor(table.numbers(cols, "--data"), dtype=torch.float32)
    labels = [row[t].strip() for row in table.rows]
    if any(not label for label in labels):
        line = table.first_line + labels.index("")
        raise ConfigError("--data", f"{cfg.csv} line {line}: the label ({table.name(t)}) is empty")
    numeric = all(is_number(label) for label in labels)
    classes = sorted(set(labels), key=float) if numeric else sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError("--target", f"column {table.name(t)!r} of {cfg.csv} has one class only ({classes[0]!r}); "
                          "a classifier needs at least two")
    if len(classes) > max(2, len(labels) // 2):
        raise ConfigError("--target", f"column {table.name(t)!r} of {cfg.csv} has {len(classes)} distinct values in "
                          f"{len(labels)} rows: it looks like a number to regress, not a label (use losslab regress)")
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    named = table.header is not None
    return Raw(x, y, None, None, classes, [table.name(c) for c in cols] if named else None,
               table.name(t) if named else None)


# --- torchvision datasets -----------------------------------------------------------------------

_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte"]
_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def _missing(root: Path, folder: str, files: list[str], name: str) -> ConfigError:
    where = root / folder
    return ConfigError(
        "--data-dir",
        f"{name} files not found: expected {', '.join(files)} in {where}; run again with --download "
        "when online, or copy the files there (--data-dir, or $LOSSLAB_DATA, names the folder that holds "
        f"{folder.split('/')[0]}/)",
    )


def _mnist_like(cls_name: str, folder: str, name: str, cfg: Any) -> Raw:
    import torch
    from torchvision import datasets

    root = Path(cfg.data_dir or default_data_dir())
    cls = getattr(datasets, cls_name)
    try:
        train = cls(str(root), train=True, download=cfg.download)
        test = cls(str(root), train=False, download=cfg.download)
    except RuntimeError as exc:
        if "not found" in str(exc).lower():
            raise _missing(root, f"{folder}/raw", _MNIST_FILES, name) from None
        raise ConfigError("--data-dir", f"{name} files in {root / folder / 'raw'} are corrupt: {exc}") from None
    except USER_ERRORS as exc:  # truncated idx files, wrong magic numbers, failed downloads
        raise ConfigError("--data-dir", f"cannot read {name} from {root / folder / 'raw'}: {exc}") from None
    raw_dir = root / folder / "raw"
    for split, ds, images, labels in (("train", train, _MNIST_FILES[0], _MNIST_FILES[1]),
                                      ("test", test, _MNIST_FILES[2], _MNIST_FILES[3])):
        if len(ds.data) != len(ds.targets):
            raise ConfigError("--data-dir", f"{name} {split} files disagree: {raw_dir / images} holds "
                              f"{len(ds.data)} images but {raw_dir / labels} {len(ds.targets)} labels")
        if tuple(ds.data.shape[1:]) != (28, 28):
            raise ConfigError("--data-dir", f"{raw_dir / images}: images are {tuple(ds.data.shape[1:])}, "
                              f"{name} images are 28x28")
    x_train, x_test = train.data.unsqueeze(1).float(), test.data.unsqueeze(1).float()
    y_train, y_test = train.targets.to(torch.int64), test.targets.to(torch.int64)
    _check_labels(name, root / folder, [y_train, y_test], len(train.classes))
    return Raw(x_train, y_train, x_test, y_test, [str(c) for c in train.classes])


@DATASETS.register("mnist", "MNIST handwritten digits (torchvision; 28x28, 10 classes; official test split)",
                   default_model="mlp", default_epochs=5)
def _mnist(cfg: Any) -> Raw:
    return _mnist_like("MNIST", "MNIST", "MNIST", cfg)


@DATASETS.register("fashion-mnist", "Fashion-MNIST clothing images (torchvision; 28x28, 10 classes)",
                   default_model="mlp", default_epochs=10)
def _fashion(cfg: Any) -> Raw:
    return _mnist_like("FashionMNIST", "FashionMNIST", "Fashion-MNIST", cfg)


class CorruptFile(Exception):
    """A dataset file that is not what its format says (its name is in the message)."""


def safe_unpickle(path: Path) -> Any:
    """Read a CIFAR batch as data, not code: only builtin containers, strings, bytes, numbers and numpy arrays
    may appear. A pickle naming any other callable (os.system, a __reduce__ payload) is refused unexecuted."""
    import pickle

    allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("builtins", "bytearray"),
               # pickle protocol 5 (Python 3's highest, e.g. a re-save with pickle.HIGHEST_PROTOCOL) rebuilds arrays
               # from their buffer
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in allowed:
                raise CorruptFile(f"{path}: the pickle names {module}.{name}, which a data file never contains "
                                  "(refused, not executed)")
            return super().find_class(module, name)

    try:
        with open(path, "rb") as fh:
            entry = Restricted(fh, encoding="latin1").load()
        if isinstance(entry, dict):  # keys as bytes (b"data") or str ("data"), as different re-saves write them
            entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        return entry
    except CorruptFile:
        raise
    except USER_ERRORS as exc:
        raise CorruptFile(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None


def _cifar10_class() -> Any:
    import numpy as np
    from torchvision import datasets

    class CIFAR10Files(datasets.CIFAR10):
        """torchvision's CIFAR10 dataset; presence of the batch files is checked instead of their MD5 sums, so
        data re-packed in the same pickle format (or written by the tests) loads too, and every pickle is read
        by `safe_unpickle` and checked (data and labels of equal length, integer labels) before use."""

        def __init__(self, root: str, train: bool = True, transform: Any = None, download: bool = False):
            datasets.VisionDataset.__init__(self, root, transform=transform)
            self.train = train
            if download:
                self.download()
            if not self._check_integrity():
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            data: list[Any] = []
            targets: list[int] = []
            for name, _ in self.train_list if train else self.test_list:
                path = Path(self.root) / self.base_folder / name
                entry = safe_unpickle(path)
                labelled = isinstance(entry, dict) and ("labels" in entry or "fine_labels" in entry)
                if not labelled or "data" not in entry:
                    raise CorruptFile(f"{path}: expected a dict with 'data' and 'labels'")
                x = entry["data"]
                labels = entry.get("labels", entry.get("fine_labels"))
                if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
                    raise CorruptFile(f"{path}: 'data' must be a uint8 array of shape (n, 3072), got "
                                      f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
                if not isinstance(labels, (list, np.ndarray)) or not all(
                        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
                    raise CorruptFile(f"{path}: 'labels' must be a list of integers")
                if len(labels) != len(x):
                    raise CorruptFile(f"{path}: {len(x)} images but {len(labels)} labels")
                data.append(x)
                targets.extend(int(v) for v in labels)
            self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
            self.targets = targets
            self._load_meta()

        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            return all((base / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            path = Path(self.root) / self.base_folder / self.meta["filename"]
            meta = safe_unpickle(path)
            names = meta.get(self.meta["key"]) if isinstance(meta, dict) else None
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise CorruptFile(f"{path}: expected '{self.meta['key']}', a list of class names")
            if len(set(names)) != len(names):
                repeated = sorted({n for n in names if names.count(n) > 1})
                raise CorruptFile(f"{path}: class names repeat: {', '.join(repeated)}")
            self.classes = names
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        def download(self) -> None:
            if not self._check_integrity():
                datasets.CIFAR10.download(self)  # md5-checked archive from the official mirror

    return CIFAR10Files


@DATASETS.register("cifar10", "CIFAR-10 colour images (torchvision; 3x32x32, 10 classes; official test split)",
                   default_model="cnn", default_epochs=10)
def _cifar10(cfg: Any) -> Raw:
    import torch

    root = Path(cfg.data_dir or default_data_dir())
    folder = root / "cifar-10-batches-py"
    cls = _cifar10_class()
    if not cfg.download and not all((folder / f).is_file() for f in _CIFAR_FILES):
        raise _missing(root, "cifar-10-batches-py", _CIFAR_FILES, "CIFAR-10")
    try:
        train = cls(str(root), train=True, download=cfg.download)
        test = cls(str(root), train=False, download=cfg.download)
    except CorruptFile as exc:
        raise ConfigError("--data-dir", f"cannot read CIFAR-10 (corrupt file): {exc}") from None
    except USER_ERRORS as exc:  # failed downloads and anything else torchvision raises
        raise ConfigError("--data-dir", f"cannot read CIFAR-10 from {folder}: {type(exc).__name__}: {exc}") from None

    def to_tensors(ds: Any) -> tuple["torch.Tensor", "torch.Tensor"]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float()  # HWC uint8 -> CHW float, once
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    (x_train, y_train), (x_test, y_test) = to_tensors(train), to_tensors(test)
    _check_labels("CIFAR-10", folder, [y_train, y_test], len(train.classes))
    return Raw(x_train, y_train, x_test, y_test, list(train.classes), note=_official("CIFAR-10", folder, cls))


def _official(name: str, folder: Path, cls: Any) -> str:
    """Whether the files are the official release: their MD5 sums against the ones torchvision lists (the
    structure is checked either way; a re-packed or synthetic set trains, and is named as such)."""
    from torchvision.datasets.utils import check_integrity

    listed = cls.train_list + cls.test_list + [(cls.meta["filename"], cls.meta["md5"])]
    differ = [file for file, md5 in listed if not check_integrity(str(folder / file), md5)]
    if not differ:
        return ""
    return (f"; not the official {name} release: the MD5 of {', '.join(differ[:2])}"
            f"{f' and {len(differ) - 2} more' if len(differ) > 2 else ''} differs from torchvision's (structure "
            "checked, contents unverified)")


def _check_labels(name: str, where: Path, labels: list["torch.Tensor"], k: int) -> None:
    for y in labels:
        if len(y) == 0 or int(y.min()) < 0 or int(y.max()) >= k:
            raise ConfigError("--data-dir", f"{name} files in {where} are corrupt: labels outside 0..{k - 1}")


# --- split, subset, normalise --------------------------------------------------------------------

@DATASETS.register("imagefolder", "your images: --data-dir DIR with one subfolder per class (torchvision "
                   "ImageFolder; --image-size, --grayscale, --val-dir)", default_model="cnn", default_epochs=10,
                   folder=True)
def _imagefolder(cfg: Any) -> Raw:
    raise AssertionError("read by load_image_folder")


def load_image_folder(cfg: Any) -> ClassificationData:
    """An image folder, split (--val-dir or a seeded --val-fraction), decoded into memory when its tensors fit
    --memory-budget, else left as datasets to stream."""
    import torch

    from losslab.components.images import Images, Split, channel_stats, check_folder, decode, guarded

    if cfg.data_dir is None:
        raise ConfigError("--data-dir", "--dataset imagefolder reads the folder given by --data-dir DIR")
    classes = check_folder(cfg.data_dir, "--data-dir")
    images = Images(cfg.data_dir, cfg.image_size, cfg.grayscale)
    g = torch.Generator().manual_seed(cfg.data_seed)
    if cfg.val_dir is not None:
        check_folder(cfg.val_dir, "--val-dir")
        val_images = Images(cfg.val_dir, images.size, cfg.grayscale, classes)
        train_idx = list(range(len(images)))
        val = Split(val_images, list(range(len(val_images))))
        split = f"--val-dir {cfg.val_dir}"
    else:
        perm = torch.randperm(len(images), generator=g).tolist()
        n_val = max(1, int(round(cfg.val_fraction * len(images))))
        if n_val >= len(images):
            raise ConfigError("--val-fraction", f"leaves no training images from {len(images)}")
        train_idx, val = sorted(perm[n_val:]), Split(images, sorted(perm[:n_val]))
        split = f"seeded {cfg.val_fraction:g} validation split (data seed {cfg.data_seed})"
    if cfg.subset is not None:
        keep = torch.randperm(len(train_idx), generator=g)[: min(cfg.subset, len(train_idx))].sort().values.tolist()
        train_idx = [train_idx[i] for i in keep]
    train = Split(images, train_idx)
    shape = images.shape
    decoded_bytes = 4 * (len(train) + len(val)) * shape[0] * shape[1] * shape[2]
    source = (f"imagefolder {cfg.data_dir}: {len(train)} train / {len(val)} validation images, shape {shape}, "
              f"classes {', '.join(classes)}")
    workers = cfg.workers
    if decoded_bytes <= cfg.memory_budget:
        x_train, y_train = decode(train, workers)
        mean, std = channel_stats((x_train[i:i + 256], None) for i in range(0, len(x_train), 256))
        x_val, y_val = decode(val, workers)
        return ClassificationData(((x_train - mean) / std).contiguous(), y_train, ((x_val - mean) / std).contiguous(),
                                  y_val, classes, source + "; decoded into memory", split, mean=mean, std=std)
    # streamed: statistics from one ordered pass (the same chunks as the in-memory path), then normalising
    # datasets read batch by batch
    loader = torch.utils.data.DataLoader(train, batch_size=256, shuffle=False, num_workers=workers)
    mean, std = channel_stats(guarded(loader))
    for part in {id(train.images): train.images, id(val.images): val.images}.values():
        part.mean, part.std = mean, std
    return ClassificationData(None, train.labels(), None, val.labels(), classes,
                              source + f"; streamed ({decoded_bytes / 2**30:.2f} GiB decoded > --memory-budget)",
                              split, train_set=train, val_set=val, shape=shape, mean=mean, std=std)


# --- a user's own dataset: --dataset package.module:NAME ------------------------------------------------------

# what a user's dataset is trained with by default (its own registry meta)
USER_DATASET: dict[str, Any] = {"default_model": "mlp", "default_epochs": 20, "default_lr": {"adam": 0.01,
                                                                                             "adamw": 0.01}}


def is_user_dataset(name: str) -> bool:
    return ":" in name


def dataset_meta(name: str) -> dict[str, Any]:
    """A dataset's defaults: a registered one's meta, or those of a user's own (an import path)."""
    return USER_DATASET if is_user_dataset(name) else DATASETS.lookup(name).meta


MAX_ITEMS = 10**9  # no Dataset that fits on one machine has more items; a longer __len__ is not a real one


def dataset_length(dataset: Any, spec: str, part: str) -> int:
    """The number of items of a user's map-style Dataset, checked before anything is read: an IterableDataset
    (no length, no indexing), a __len__ that raises or is absurd are one line naming --dataset."""
    import torch

    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise ConfigError("--dataset", f"{spec}: its {part} part is an IterableDataset; losslab reads map-style "
                          "Datasets (__len__ and __getitem__) or tensors (X, y), so that every run sees the same "
                          "items in a seeded order")
    try:
        n = len(dataset)
    except USER_ERRORS as exc:
        raise ConfigError("--dataset", f"{spec}: len() of its {part} part failed: {describe(exc)}") from None
    if not isinstance(n, int) or n < 0 or n > MAX_ITEMS:
        raise ConfigError("--dataset", f"{spec}: its {part} part says it has {n:,} items (__len__); losslab reads "
                          f"at most {MAX_ITEMS:,}")
    return n


def _label(value: Any) -> Any:
    """A label as a Python number, never truncated: 0-d tensors and numpy scalars give their own value (a
    fractional one is then refused as a class index, not silently made an integer)."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return item()
    return value


def _tensors(x: Any, y: Any, spec: str, part: str) -> tuple[Any, Any]:
    """(inputs float32 — or int64 where they are integers, token ids an nn.Embedding reads —, labels int64) of one
    part of a user's dataset, or a one-line error naming --dataset."""
    import numpy as np
    import torch

    try:
        xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
        xt = xt.long() if not xt.is_floating_point() and not xt.is_complex() and xt.dtype != torch.bool else xt.float()
        yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError("--dataset", f"{spec}: its {part} inputs or labels are not numbers (labels are class "
                          f"indices 0, 1, ...): {describe(exc)}") from None
    if xt.ndim == 1:  # one number per item: one feature
        xt = xt.reshape(-1, 1)
    if len(xt) == 0:
        raise ConfigError("--dataset", f"{spec}: its {part} split is empty")
    if len(xt) != len(yt):
        raise ConfigError("--dataset", f"{spec}: {len(xt)} inputs but {len(yt)} labels in its {part} split")
    yt = class_indices(yt, spec, part)
    if xt.is_floating_point() and not torch.isfinite(xt).all():
        raise ConfigError("--dataset", f"{spec}: its {part} inputs hold NaN or infinite values")
    return xt, yt


INPUT_KEYS = ("input_ids", "inputs", "input", "x")  # a dict item's input, by the first of these it has
TARGET_KEYS = ("labels", "label", "targets", "target", "y")  # and its label


Keys = tuple[Optional[str], Optional[str]]  # --input-key, --target-key (None: the first of INPUT_KEYS, TARGET_KEYS)


def _pair(item: Any, spec: str, part: str, i: int, keys: Keys = (None, None)) -> tuple[Any, Any]:
    """An item's (input, label): a pair, or a dict read by --input-key and --target-key (default: the first of
    INPUT_KEYS and of TARGET_KEYS it has: the Hugging Face shape {"input_ids": ..., "labels": ...})."""
    if not isinstance(item, dict):
        return item[0], item[1]
    found = []
    for given, candidates, option in ((keys[0], INPUT_KEYS, "--input-key"), (keys[1], TARGET_KEYS, "--target-key")):
        key = given if given is not None else next((k for k in candidates if k in item), None)
        if key is None or key not in item:
            have = ", ".join(map(str, item))
            wanted = repr(given) if given is not None else " or ".join(candidates)
            raise ConfigError(option if given is not None else "--dataset", f"{spec}: its {part} item {i} is a dict "
                              f"with keys {have}, none of them {wanted} (name yours with {option})")
        found.append(item[key])
    return found[0], found[1]


def _decode(dataset: Any, spec: str, part: str, keys: Keys = (None, None)) -> tuple[Any, Any]:
    """A map-style Dataset of (input, label) pairs, every item read into memory (what they need checked first)."""
    from losslab.limits import check_memory

    n = dataset_length(dataset, spec, part)
    if n:
        check_memory("--dataset", n * (_sample_bytes(dataset, spec, keys) + 8), f"{spec}: {n:,} {part} items in memory")
    try:
        items = [dataset[i] for i in range(n)]
        xs, ys = zip(*[_pair(item, spec, part, i, keys) for i, item in enumerate(items)]) if items else ((), ())
    except ConfigError:
        raise
    except USER_ERRORS as exc:
        raise ConfigError("--dataset", f"{spec}: reading its {part} items failed: {type(exc).__name__}: "
                          f"{exc}") from None
    import numpy as np
    import torch

    try:
        x = torch.stack([torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v) for v in xs]) \
            if xs else torch.empty(0)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError("--dataset", f"{spec}: its {part} inputs do not all have one shape: {exc}") from None
    return _tensors(x, [_label(v) for v in ys], spec, part)


def _user_parts(spec: str) -> tuple[Any, Any]:
    """What a user's dataset import path gives, as (training part, validation part or None); each part is a
    map-style Dataset or a pair (X, y)."""
    import torch

    from losslab.components.losses import user_data

    obj = user_data(spec, "--dataset")
    def part_like(v: Any) -> bool:
        return isinstance(v, torch.utils.data.Dataset) or is_items(v) or (isinstance(v, (tuple, list)) and len(v) == 2)

    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(part_like(v) for v in obj):
        return obj[0], obj[1]
    if not part_like(obj):
        raise ConfigError("--dataset", f"{spec} gave {type(obj).__name__}: expected tensors (X, y), a Dataset of "
                          "(input, label) pairs, or a pair (train, valid) of them")
    return obj, None


def is_items(value: Any) -> bool:
    """A list of dict items ({"input_ids": ..., "labels": ...}): a map-style dataset as DataLoader takes one."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _read_part(value: Any, spec: str, part: str, keys: Keys = (None, None)) -> tuple[Any, Any]:
    import torch

    if isinstance(value, torch.utils.data.Dataset) or is_items(value):
        return _decode(value, spec, part, keys)
    return _tensors(value[0], value[1], spec, part)


def load_user_dataset(spec: str, parts: Optional[tuple[Any, Any]] = None, keys: Keys = (None, None)) -> Raw:
    """`spec` names a function (or a value) giving tensors (X, y), a map-style Dataset of (input, label) pairs, or a
    pair (train, valid) of them; read into memory (the validation split is made as for tables when none is given)."""
    train, valid = parts if parts is not None else _user_parts(spec)
    x, y = _read_part(train, spec, "training", keys)
    xv = yv = None
    if valid is not None:
        xv, yv = _read_part(valid, spec, "validation", keys)
        if xv.shape[1:] != x.shape[1:]:
            raise ConfigError("--dataset", f"{spec}: validation inputs of shape {tuple(xv.shape[1:])}, training "
                              f"inputs of shape {tuple(x.shape[1:])}")
    classes = int(max(int(y.max()), int(yv.max()) if yv is not None else 0)) + 1
    return Raw(x, y, xv, yv, [str(c) for c in range(classes)])


def _sample_bytes(dataset: Any, spec: str, keys: Keys = (None, None)) -> int:
    """The decoded size of one sample of a user's Dataset (float32), from its first item."""
    import numpy as np

    if dataset_length(dataset, spec, "training") == 0:
        raise ConfigError("--dataset", f"{spec}: its training split is empty")
    try:
        return 4 * int(np.asarray(_pair(dataset[0], spec, "training", 0, keys)[0]).size)
    except ConfigError:
        raise
    except USER_ERRORS as exc:
        raise ConfigError("--dataset", f"{spec}: reading its training items failed: {type(exc).__name__}: "
                          f"{exc}") from None


def load_user_classification(cfg: Any) -> ClassificationData:
    """A user's dataset: read into memory and split as tables are, or — a Dataset whose decoded samples exceed
    --memory-budget — streamed through a DataLoader, normalised with statistics from one ordered pass."""
    import torch

    spec = cfg.dataset
    train, valid = _user_parts(spec)
    keys = (cfg.input_key, cfg.target_key)
    if isinstance(train, torch.utils.data.Dataset):
        size = _sample_bytes(train, spec, keys)
        total = size * (dataset_length(train, spec, "training") + (dataset_length(valid, spec, "validation")
                                                                    if isinstance(valid, torch.utils.data.Dataset)
                                                                    else 0))
        if total > cfg.memory_budget:
            return _stream_user_dataset(cfg, train, valid, total)
    return split_and_normalise(cfg, load_user_dataset(spec, (train, valid), keys), per_feature=False,
                               given="the validation split it gives")


def _stream_user_dataset(cfg: Any, train: Any, valid: Any, total: int) -> ClassificationData:
    import torch

    from losslab.components.streams import UserSplit, sample_stats

    spec = cfg.dataset
    if valid is not None and not isinstance(valid, torch.utils.data.Dataset):
        raise ConfigError("--dataset", f"{spec}: a streamed training Dataset needs a Dataset for validation too "
                          "(or none: a seeded split is made)")
    if cfg.imbalance is not None:
        raise ConfigError("--imbalance", f"is not available for a streamed dataset ({spec} is over --memory-budget)")
    g = torch.Generator().manual_seed(cfg.data_seed)
    indices = list(range(len(train)))
    if valid is None:  # the seeded split of tables (subset first, then the validation fraction)
        if cfg.subset is not None:
            indices = torch.randperm(len(train), generator=g)[: min(cfg.subset, len(train))].tolist()
        perm = torch.randperm(len(indices), generator=g).tolist()
        n_val = max(1, int(round(cfg.val_fraction * len(indices))))
        if n_val >= len(indices):
            raise ConfigError("--val-fraction", f"leaves no training data from {len(indices)} samples")
        # (in the order of the in-memory path: the same batches from the same seed)
        train_part = UserSplit(train, [indices[i] for i in perm[n_val:]], spec, "training")
        val_part = UserSplit(train, [indices[i] for i in perm[:n_val]], spec, "validation")
        split = f"seeded {cfg.val_fraction:g} validation split (data seed {cfg.data_seed})"
    else:
        val_indices = list(range(len(valid)))
        if cfg.subset is not None:  # (as split_and_normalise: the validation split shrinks in proportion)
            n_test = max(1, math.ceil(cfg.subset * len(valid) / len(train)))
            indices = torch.randperm(len(train), generator=g)[: min(cfg.subset, len(train))].tolist()
            val_indices = torch.randperm(len(valid), generator=g)[:n_test].tolist()
        train_part = UserSplit(train, indices, spec, "training")
        val_part = UserSplit(valid, val_indices, spec, "validation")
        split = "the validation split it gives"
    mean, std, y_train, shape = sample_stats(train_part, cfg.workers)
    _, _, y_val, val_shape = sample_stats(val_part, cfg.workers)
    if val_shape != shape:
        raise ConfigError("--dataset", f"{spec}: validation inputs of shape {val_shape}, training inputs of shape "
                          f"{shape}")
    train_part.mean = val_part.mean = mean
    train_part.std = val_part.std = std
    classes = int(max(int(y_train.max()), int(y_val.max()))) + 1
    source = (f"{shown(spec)}: {len(train_part)} train / {len(val_part)} validation samples, shape {shape}; streamed "
              f"({total / 2**30:.2f} GiB decoded > --memory-budget)")
    return ClassificationData(None, y_train, None, y_val, [str(c) for c in range(classes)], source, split,
                              train_set=train_part, val_set=val_part, shape=shape, mean=mean, std=std)


def load_classification(cfg: Any) -> ClassificationData:

    if is_user_dataset(cfg.dataset):  # normalised as tables (per feature) and images (per channel) are
        return load_user_classification(cfg)
    entry = DATASETS.lookup(cfg.dataset)
    if entry.meta.get("folder"):
        return load_image_folder(cfg)
    return split_and_normalise(cfg, entry.factory(cfg), per_feature=entry.meta.get("normalise") == "feature")


def split_and_normalise(cfg: Any, raw: Raw, per_feature: bool,
                        given: str = "official test split") -> ClassificationData:
    """The validation split (the official one, or a seeded fraction), --subset and --imbalance, then every input
    normalised with the training split's statistics."""
    import torch

    g = torch.Generator().manual_seed(cfg.data_seed)
    x, y = raw.x_train, raw.y_train
    if raw.x_test is None:
        if cfg.subset is not None:
            keep = torch.randperm(len(y), generator=g)[: min(cfg.subset, len(y))]
            x, y = x[keep], y[keep]
        perm = torch.randperm(len(y), generator=g)
        n_val = max(1, int(round(cfg.val_fraction * len(y))))
        if n_val >= len(y):
            if cfg.subset is not None:
                raise ConfigError("--subset", f"{cfg.subset} sample(s) leave nothing to train on after the "
                                  f"{cfg.val_fraction:g} validation split; use at least {n_val + 1}")
            raise ConfigError("--val-fraction", f"leaves no training data from {len(y)} samples")
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
        split = f"seeded {cfg.val_fraction:g} validation split (data seed {cfg.data_seed})"
    else:
        x_train, y_train, x_val, y_val = x, y, raw.x_test, raw.y_test
        assert y_val is not None and x_val is not None  # datasets without a test split took the branch above
        if cfg.subset is not None:
            n_test = max(1, math.ceil(cfg.subset * len(y_val) / len(y_train)))
            keep = torch.randperm(len(y_train), generator=g)[: min(cfg.subset, len(y_train))]
            keep_val = torch.randperm(len(y_val), generator=g)[:n_test]
            x_train, y_train, x_val, y_val = x_train[keep], y_train[keep], x_val[keep_val], y_val[keep_val]
        split = given
    if cfg.imbalance is not None and cfg.dataset != "blobs":
        x_train, y_train, note = make_imbalanced(x_train, y_train, len(raw.classes), cfg.imbalance, g)
        split += note
    if x_train.is_floating_point():
        mean, std = _stats(x_train, per_feature=per_feature)
        x_train = ((x_train - mean) / std).contiguous()
        x_val = ((x_val - mean) / std).contiguous()
    else:  # integer inputs (token ids) stay integers, as they are
        mean, std = torch.zeros(x_train.shape[1:]), torch.ones(x_train.shape[1:])
    source = (f"{shown(cfg.dataset)}: {len(y_train)} train / {len(y_val)} validation samples, shape "
              f"{tuple(x_train.shape[1:])}{raw.note}")
    return ClassificationData(x_train, y_train, x_val, y_val, raw.classes, source, split, mean=mean, std=std,
                              features=raw.features, target=raw.target)


def minority_classes(classes: int) -> list[int]:
    """The classes `--imbalance` makes rare outside blobs: the upper half of the class indices."""
    return list(range(classes - classes // 2, classes)) if classes > 1 else []


def make_imbalanced(x: Any, y: Any, classes: int, ratio: float, g: Any) -> tuple[Any, Any, str]:
    """Keep a seeded 1/ratio of the training samples of the minority classes (validation keeps its natural
    balance, so every metric is measured on the same split)."""
    import torch

    keep = torch.ones(len(y), dtype=torch.bool)
    for c in minority_classes(classes):
        rows = torch.nonzero(y == c).flatten()
        rows = rows[torch.randperm(len(rows), generator=g)]
        drop = rows[max(1, int(round(len(rows) / ratio))):]
        keep[drop] = False
    return x[keep], y[keep], (f"; training split imbalanced: classes {minority_classes(classes)} kept at "
                              f"1/{ratio:g} (validation keeps its natural balance)")


def _stats(x: "torch.Tensor", per_feature: bool = False) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Mean and std of the training split: per channel for images (as torchvision's Normalize), per feature
    for tables and for datasets registered with normalise="feature" (every pixel of digits, as scikit-learn's
    StandardScaler). A constant feature keeps std 1 (StandardScaler's rule), so it stays 0 after centring."""
    import torch

    dims = [0, 2, 3] if x.ndim == 4 and not per_feature else [0]
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, correction=0 if per_feature else 1)  # StandardScaler: population std
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return mean.squeeze(0), std.squeeze(0)

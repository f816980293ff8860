"""File-system checks made before a run trains: the folders and files it will write can be written and have room."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from losslab.errors import ConfigError


def _probe_folder(option: str, folder: Path, shown: str) -> None:
    """Create a file in `folder` and remove it: the one test of writability that cannot lie."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".losslab-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(option, f"cannot write to {shown}: {exc.strerror or exc}") from None


OUT_RECORD_BYTES = 400  # one epoch record in history.csv and result.json, generously


TENSORBOARD_RECORD_BYTES = 800  # one epoch record as TensorBoard scalar events (about 50 B a scalar)


PLOT_BYTES = 256 << 10  # one PNG, generously


def check_out_dir(path: Optional[str], files: tuple[str, ...] = (), option: str = "--out", records: int = 0) -> None:
    """Fail early (before training) when `--out` (or `--tensorboard`) cannot take every file the run will write
    there: not a folder, not writable, or without room for `records` epoch records and the files."""
    if path is None:
        return
    if not path.strip():
        raise ConfigError(option, "is empty; give a folder name (use . for the current folder)")
    p = Path(path).expanduser()
    try:
        if p.exists() and not p.is_dir():
            raise ConfigError(option, f"{path} exists and is not a folder")
        p.mkdir(parents=True, exist_ok=True)
        for name in files:
            if (p / name).is_dir():
                raise ConfigError(option, f"{p / name} is a folder; the run writes a file there")
    except OSError as exc:  # a name too long for the file system, a read-only or full disk, no permission
        raise ConfigError(option, f"cannot create folder {path}: {exc.strerror or exc}") from None
    _probe_folder(option, p, path)
    plots = sum(name.endswith(".png") for name in files)
    need = records * (TENSORBOARD_RECORD_BYTES if option == "--tensorboard" else OUT_RECORD_BYTES) + plots * PLOT_BYTES
    check_space(option, p, path, need)


def check_space(option: str, folder: Path, shown: str, need: int) -> None:
    import shutil

    free = shutil.disk_usage(folder).free
    if need > free:
        raise ConfigError(option, f"the run writes about {need / 2**20:,.1f} MiB there; {shown} has "
                          f"{free / 2**20:,.1f} MiB free")


def check_file_target(option: str, path: Optional[str]) -> None:
    """Fail early when a file option (e.g. --save) names a folder, or a place that cannot be written."""
    if path is None:
        return
    if not path.strip():
        raise ConfigError(option, "is empty; give a file name")
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            raise ConfigError(option, f"{path} is a folder; give a file name")
        parent = p.resolve().parent
        if not parent.is_dir():
            raise ConfigError(option, f"folder {parent} does not exist")
        if len(p.name.encode()) > os.pathconf(parent, "PC_NAME_MAX"):
            raise ConfigError(option, f"the file name {p.name[:40]}... is longer than the file system allows")
    except OSError as exc:
        raise ConfigError(option, f"cannot write {path}: {exc.strerror or exc}") from None
    _probe_folder(option, parent, str(parent))

"""losslab.stack: deep work starts a frame chunk of its own, so neither torch's import nor a training loop maps
and unmaps a chunk on every call (CPython 3.11/3.12's chunk thrashing, gh-142183). Counted with strace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from losslab import stack

STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(STRACE is None, reason="strace counts the system calls")


def test_calls_through_with_arguments_results_and_exceptions():
    assert stack.on_fresh_stack(divmod, 17, 5) == (3, 2)
    assert stack.on_fresh_stack(lambda *a, **k: (a, k), 1, x=2) == ((1,), {"x": 2})
    with pytest.raises(ZeroDivisionError):
        stack.on_fresh_stack(divmod, 1, 0)


def test_the_frame_is_bigger_than_a_chunk_and_than_half_its_own():
    """16 KiB is CPython's chunk: a frame with more slots than that always starts a chunk of its own, sized the
    smallest 16 KiB x 2^k that holds it and 1,000 words more; a second such frame must not fit in the rest."""
    slots = stack._call.__code__.co_stacksize
    chunk = 2048
    while chunk < slots + 1000:
        chunk *= 2
    assert slots > 2048 and slots > chunk - slots, (slots, chunk)


def traced(command: list[str], log: Path, calls: str = "munmap") -> str:
    """The system calls `calls` that `command` (and its children) make, as strace writes them."""
    subprocess.run([STRACE, "-f", "--seccomp-bpf", "-e", f"trace={calls}", "-o", str(log), *command], check=True,
                   capture_output=True)
    return log.read_text()


def munmaps_between_marks(script: str, tmp_path: Path) -> list[int]:
    """munmap calls between the MARK lines the script writes on stderr (before the first: warm-up, not counted)."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    counts: list[int] = []
    for line in traced([sys.executable, str(path)], tmp_path / "strace.txt", "munmap,write").splitlines():
        if "MARK" in line:
            counts.append(0)
        elif "munmap(" in line and counts:
            counts[-1] += 1
    return counts[:-1]


LOOPS = """\
    import os, sys, torch
    from torch import nn
    from losslab.engine.loop import fit
    from losslab.stack import on_fresh_stack
    sys.setrecursionlimit(10_000)

    def plain(epochs):
        torch.manual_seed(0)
        x = torch.randn(50, 1); y = 2 * x + 3
        model = nn.Linear(1, 1); optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(epochs):
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()

    def losslab(epochs):
        torch.manual_seed(0)
        x = torch.randn(50, 1); y = 2 * x + 3
        model = nn.Linear(1, 1)
        fit(model, nn.functional.mse_loss, torch.optim.Adam(model.parameters(), lr=0.01), (x, y), epochs=epochs)

    def at(depth, fn, pad0=0, pad1=0, pad2=0, pad3=0):
        return fn(200) if depth == 0 else at(depth - 1, fn)

    plain(5), losslab(5)
    # the plain loop; losslab's; losslab's nested as the CLI nests it (its dispatch on a chunk of its own, then
    # the skeleton's loop on another)
    for call in (lambda d: at(d, plain), lambda d: at(d, losslab), lambda d: on_fresh_stack(at, d, losslab)):
        os.write(2, b"MARK\\n")
        for depth in range(0, 121, 3):
            call(depth)
    os.write(2, b"MARK\\n")
"""


@needs_strace
@pytest.mark.slow
def test_a_training_loop_does_not_thrash_from_any_depth(tmp_path):
    control, ours, nested = munmaps_between_marks(LOOPS, tmp_path)
    if control < 2000:
        pytest.skip(f"this Python does not thrash (the plain loop: {control} munmap calls)")
    # 41 depths x 200 epochs: the plain loop thrashes at some (4,000-9,000 calls); ours makes ~17 a run
    assert ours < control / 5 and nested < control / 5, (ours, nested, control)


@needs_strace
@pytest.mark.slow
def test_the_cli_imports_torch_without_thrashing(tmp_path):
    """`losslab regress` imports torch ~15 frames deeper than a script; it did 21,500 munmaps, a script 1,700."""
    losslab = Path(sys.executable).with_name("losslab")
    log = tmp_path / "cli.txt"
    ours = traced([str(losslab), "regress", "--epochs", "10", "--quiet", "--device", "cpu"], log).count("munmap(")
    script = "import torch\ntorch.optim.Adam([torch.zeros(1, requires_grad=True)])\n"
    plain = traced([sys.executable, "-c", script], log).count("munmap(")
    assert ours <= plain + 500, (ours, plain)

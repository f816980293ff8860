"""Deep work on a frame chunk of its own: `on_fresh_stack(fn, *args)`.

CPython 3.11 and 3.12 keep a thread's Python frames in chunks (16 KiB, or more for a frame that needs it) and free
a chunk as soon as the frame at its start returns (CPython gh-142183; 3.13.x and 3.14 keep one spare). Code that
keeps calling across a chunk's end maps and unmaps memory on every such call. `losslab regress`, run from the
shell, imported torch about 15 frames deeper than a plain script does, and there the import machinery crossed a
chunk's end 20,000 times: 21,500 mmap/munmap pairs against the plain script's 1,700, about 0.15 s of system time
(`strace -f -c`). The same happens to a training loop whose steps cross a chunk's end (+50 % on the loop at
some depths).

`_call`'s frame is made bigger (`_SLOTS` stack slots, 156 KiB) than any chunk in use, so the interpreter starts a
new 256 KiB chunk for it and whatever `fn` calls has about 100 KiB of frames before that chunk's end: torch's
import and a training loop fit, from whatever depth the caller (the CLI, a notebook, a Ray worker) calls. The
frame is more than half its chunk, so a nested call (the CLI's, then the skeleton's) never fits in what the outer
one left — with a smaller frame (125 KiB) it did, and `compare-losses` trained at the very end of the outer
chunk: 30,000 mmap/munmap pairs. The slots are reserved, not written: a chunk's untouched pages cost no memory.
benchmarks/bench_loop.py and bench_process.py measure it; tests/test_stack.py checks the frame and counts the
calls.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")

# words: 8 * (20_000 + 1_000 overhead) > 128 KiB, so CPython allocates a 256 KiB (32,768-word) chunk, and
# 20_000 > 32_768 - 20_000: no second such frame fits in the rest of the first one's chunk
_SLOTS = 20_000


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


_call.__code__ = _call.__code__.replace(co_stacksize=_SLOTS)


def on_fresh_stack(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, called from a frame that starts a frame chunk of its own (see the module's text)."""
    return _call(fn, *args, **kwargs)

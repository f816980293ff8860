"""What a run may take from the machine: its memory, checked before anything is allocated (every layer uses it,
so it sits at the bottom)."""

from __future__ import annotations

from losslab.errors import ConfigError


def memory_bytes() -> int:
    """This machine's physical memory (24 GiB when the OS will not say)."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 24 << 30


def check_memory(option: str, needed: float, what: str) -> None:
    """Refuse, before allocating anything, a run whose estimated memory exceeds half of this machine's."""
    limit = memory_bytes() / 2
    if needed > limit:
        raise ConfigError(option, f"{what} needs about {needed / 2**30:,.1f} GiB, more than half of this "
                          f"machine's {2 * limit / 2**30:,.0f} GiB; use a smaller value")

"""Reading a command's plain progress lines as CI sees them."""
from typing import IO


def next_event(stream: IO[str]) -> str:
    """The next progress line that reports an event (a run's epoch or a finished trial), skipping the heartbeat lines
    ('… 1 of 2 runs done, …') a loaded machine prints while it waits. '' at the end of the stream."""
    while True:
        line = stream.readline()
        if not line.startswith("…"):
            return line

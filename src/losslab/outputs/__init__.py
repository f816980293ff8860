"""Consumers of training events and results: live display, reports, JSON/CSV files, plots.

Every command builds its event dispatcher with `dispatcher(ctx, own)`: the command's own display first, then
one instance of each consumer registered in `CONSUMERS` whose factory accepts this run (a factory returns None
to stay out, e.g. a file sink when its option is unset). A new sink is one `Consumer` class and one
`CONSUMERS.register(...)` line, and every command then feeds it.
"""

from losslab.outputs import notebook as _notebook  # noqa: F401  (registers the notebook progress consumer)
from losslab.outputs import tensorboard as _tensorboard  # noqa: F401  (registers the --tensorboard consumer)
from losslab.outputs.sinks import CONSUMERS, OutputContext, dispatcher

__all__ = ["CONSUMERS", "OutputContext", "dispatcher"]

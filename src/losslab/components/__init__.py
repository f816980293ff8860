"""Component registries — optimizers, losses, models, datasets — and the data they read.

Each registry maps a name to a lazy factory with a one-line description and the entry's behaviour in its
meta (an optimizer's default rates and stacked update, a loss's tasks). Nothing here imports torch at module
level, so the CLI lists choices without it.
"""

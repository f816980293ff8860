"""losslab: PyTorch training experiments (losses, optimizers, learning rates) as one command each."""

__version__ = "0.1.0"

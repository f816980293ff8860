"""The command line: Typer app and options (`app`), config assembly from options (`configs`). Knows no torch."""

from losslab.cli.typer_app import app, main

__all__ = ["app", "main"]

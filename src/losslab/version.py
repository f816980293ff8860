"""The version: one place, read by the package, its metadata (pyproject) and every document it writes."""

__version__ = "0.1.0"

"""The installed version of runlog."""

__version__ = "0.1.0"

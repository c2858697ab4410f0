"""Pretext tasks, one file each; every module here registers itself in ``TASKS``."""

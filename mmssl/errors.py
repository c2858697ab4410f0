"""The errors that are the user's to fix, in one torch-free module.

``mmssl.cli`` catches these (and ``RecipeError``, ``RegistryError``) and prints one line
without a traceback; keeping them here lets the CLI start without importing torch. The
modules that raise them re-export them under their old names.
"""

from __future__ import annotations


class DataError(ValueError):
    """The data section points at something missing or malformed."""


class BadExampleError(RuntimeError):
    """An example could not be used and the recipe says to raise."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the last good one."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite and the recipe says to stop (or skips ran out)."""


class HubError(RuntimeError):
    """A push failed for a reason the user can fix (token, repo id, permissions)."""


class RunLockedError(RuntimeError):
    """Another process is writing into this run directory (mmssl/train/run_lock.py)."""

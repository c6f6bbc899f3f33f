"""The two ways a command stops on the user's account, each phrased as one line that says what to fix.

``ConfigError``: a refused input (exit code 2), raised before anything runs or is written.
``RunError``: a run that cannot go on once started (exit code 1)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that says what to fix."""

    exit_code = 2


class RunError(RuntimeError):
    """A run that cannot go on, phrased as one line."""

    exit_code = 1

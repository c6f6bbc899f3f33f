"""The two ways a command stops on the user's account, each phrased as one line that says what to fix.

``ConfigError``: a refused input (exit code 2), raised before anything runs or is written.
``RunError``: a run that cannot go on once started (exit code 1)."""
from __future__ import annotations

import errno


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that says what to fix."""

    exit_code = 2


class RunError(RuntimeError):
    """A run that cannot go on, phrased as one line."""

    exit_code = 1


# What a full or read-only disk looks like when a run writes; each is the user's to fix, not a bug.
DISK_ERRNOS = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded",
               "EROFS": "read-only file system", "EFBIG": "file too large for the file system",
               "EACCES": "permission denied", "EPERM": "operation not permitted"}


def disk_error(e: BaseException, where: str) -> RunError | None:
    """A one-line ``RunError`` when ``e`` is, or was raised while handling, an ``OSError`` of a full,
    read-only or forbidden disk (torch.save wraps ENOSPC in a RuntimeError); else None."""
    while e is not None and not isinstance(e, OSError):
        e = e.__cause__ or e.__context__
    name = errno.errorcode.get(e.errno or 0, "") if e is not None else ""
    if name not in DISK_ERRNOS:
        return None
    return RunError(f"{DISK_ERRNOS[name]} ({name}) writing {e.filename or where}; free space or set results_dir to "
                    f"another disk, then run the same command again: files are written atomically, so what was "
                    f"written before is intact")

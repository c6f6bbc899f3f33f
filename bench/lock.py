"""One process per run id: an exclusive OS file lock on ``<results_dir>/runs/<run_id>/lock``.

- Taken for the whole task (``bench.tasks.execute``) with ``flock``; the kernel releases it when the
  process ends in any way, SIGKILL included. The file holds the holder's host, pid, start time and
  command, so a second process refuses in one line that names it.
- Stale: a lock file that still names a holder while nobody holds the lock was left by a process that
  died; it is taken over with a one-line note. A clean exit empties the file before unlocking.
- Evaluation-only commands on a finished run (``wait=True``) wait for their turn instead of refusing.
- DDP: global rank 0 alone takes the lock (one lock per run, however many nodes: a lock per node's local
  rank 0 would let two nodes of one job, or two jobs on different nodes, hold "their" lock at once), and
  every rank learns through a collective whether it got it, so all ranks refuse together. A rank 0 that
  waits its turn keeps the other ranks in that collective, which ends with the process group's timeout.

Shared filesystems: the lock is as safe as the mount makes ``flock``. On Linux NFS clients ``flock`` is
mapped onto NFS byte-range locks, which the server arbitrates between hosts (NFSv4: a crashed client's
lock is freed when its lease expires, about 90 s; NFSv3 needs lockd/statd, and a ``nolock`` mount makes
locks local to each host). Lustre shares locks between clients only when mounted with ``-o flock``;
``localflock`` makes them node-local, and without either ``flock`` fails: the run then goes on with a
one-line warning that it is not protected. A takeover of a lock whose holder was another host says so,
as that is what a node-local lock looks like when the holder is in fact alive.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Callable, Iterator

from bench.errors import RunError

LOCK_NAME = "lock"
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunBusy(RunError):
    """Another live process holds the run's lock."""


def holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}


def describe(info: dict | None) -> str:
    if not info:
        return "another process (it has not written its name yet)"
    return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('started')} ({info.get('command')})"


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return {"command": text[:100]}


def _write(fd: int, info: dict | None) -> None:
    os.ftruncate(fd, 0)
    if info:
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    os.fsync(fd)


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def run_lock(run_dir: Path, wait: bool = False, note: Callable[[str], None] = _warn) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (made if missing) for the ``with`` block, or raise ``RunBusy``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path, name = run_dir / LOCK_NAME, run_dir.name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            busy = describe(_read(fd))
            if not wait:
                raise RunBusy(f"run '{name}' is in use by {busy}; wait for it to end or stop it, then run the "
                              f"same command again (lock: {path})") from None
            note(f"{name}: waiting for {busy} to finish (evaluations of a finished run take turns)")
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError as e:
            if e.errno not in UNSUPPORTED:
                raise
            note(f"{name}: warning: this file system does not support file locks ({e.strerror}); nothing stops "
                 f"a second process on this run id")
        stale = _read(fd)
        if locked and stale:
            other = stale.get("host") != socket.gethostname()
            note(f"{name}: taking over the lock left by {describe(stale)}, which ended without releasing it"
                 + ("; it ran on another host: if it is still alive, this file system does not share locks "
                    "between hosts (e.g. Lustre localflock, NFS nolock)" if other else ""))
        _write(fd, holder())
        yield
    finally:
        if locked:
            _write(fd, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def hold_run(run_dir: Path, wait: bool, device: str) -> Iterator[None]:
    """``run_lock`` for this process, or under DDP for global rank 0 only, with every rank told the outcome."""
    from methods.harness.dist import env_rank_world

    if env_rank_world()[1] == 1:
        with run_lock(run_dir, wait):
            yield
        return
    from methods.harness.dist import all_true, init_distributed

    env = init_distributed(device)
    with contextlib.ExitStack() as stack:
        refused = None
        if env.is_main:
            try:
                stack.enter_context(run_lock(run_dir, wait))
            except RunError as e:
                refused = e
        if not all_true(refused is None, env):
            raise refused or RunBusy(f"run '{Path(run_dir).name}' is in use: rank 0 could not take its lock")
        yield

"""Preemption and time limits inside a submitted job (submitit's checkpointing protocol).

SLURM warns a job before its time limit (``--signal``: USR2 ``signal_delay_s`` seconds ahead, submitit's
preemption signal) and sends SIGTERM when it preempts, cancels or requeues it. Submitit's own handler
would requeue at once and kill the process mid-step. ``Preemption`` takes both signals over: it notes
the signal, and as a trainer hook stops training at the next step all ranks agree on (every step in
one process, every ``CHECK_EVERY`` steps with several, which costs one tiny all-reduce), after which
the trainer writes its checkpoint and the run record says ``partial``. Then ``finish`` hands over:

- USR2: rank 0 calls submitit's handler, which asks the submitted callable's ``checkpoint()`` (Hydra's
  submitit launcher and ``bench.suite``'s jobs resubmit themselves unchanged), requeues the job with
  ``scontrol requeue`` and exits; the requeued job resumes the run from its checkpoint by run id and
  skips the evaluation points already recorded (a signal during evaluation hands over before the next
  point, ``between_points``).
- SIGTERM: SLURM already requeued or cancelled the job; every rank exits without a result.

Hard kills (SIGKILL, node failures) lose the steps since the last checkpoint, bounded by
``train.ckpt_every_minutes``; the resumed run records them as ``lost_wall_seconds``.
"""
from __future__ import annotations

import signal
import sys

from methods.harness.dist import DistEnv, any_true

CHECK_EVERY = 10


class Preemption:
    def __init__(self, env: DistEnv, active: bool):
        self.env, self.caught = env, None
        self.previous: dict[int, object] = {}
        if not active:
            return
        import submitit

        self.warning = submitit.JobEnvironment._usr_sig()
        for sig in (self.warning, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._note)

    def _note(self, signum, frame) -> None:
        self.caught = signum
        print(f"caught {signal.Signals(signum).name}: checkpointing at the next step", file=sys.stderr, flush=True)

    def __call__(self, trainer) -> None:
        if not self.previous:
            return
        if self.env.world > 1 and trainer.step % CHECK_EVERY and trainer.step < trainer.cfg.steps:
            return
        if any_true(self.caught is not None, self.env):
            name = signal.Signals(self.caught).name if self.caught else "a signal on another rank"
            trainer.stop_reason = f"preempted ({name}); checkpoint written, the job requeues"

    def between_points(self) -> None:
        """Between evaluation points (every rank evaluates, so they agree, as the training hook does):
        hand over at once if a signal came (the record holds every finished point, the requeued job
        evaluates the rest)."""
        if self.previous and any_true(self.caught is not None, self.env):
            self.finish()

    def finish(self) -> None:
        """After training stopped on a signal: requeue (rank 0, the warning signal) and exit every rank."""
        if self.env.is_main and self.caught == getattr(self, "warning", None):
            self.previous[self.caught](self.caught, None)      # submitit: checkpoint(), scontrol requeue, exit
        raise SystemExit(128 + (self.caught or signal.SIGTERM))

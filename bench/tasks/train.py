"""``task=train`` (the default): train (or resume) -> evaluate every pending point -> write the run record.

``prepare`` is ``bench.config.prepare_train``; ``execute`` trains in the shared harness, then every process
evaluates each (weights, NFE, guidance) point not yet in the record (``bench.evaluation.loop``; rank 0
rewrites the record after each one).
"""
from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import torch

from bench import record as rec
from bench.config import RunSpec, prepare_train as prepare  # noqa: F401 (the task's prepare)
from bench.errors import RunError
from bench.evaluation.loop import EvalContext, evaluate_run, pending_points
from bench.geometry import batch_geometry
from bench.jobs import submitted
from bench.preemption import Preemption
from bench.tasks import train_guard as guard
from bench.train_quality import QualityWatch
from methods.backbones import build_backbone
from methods.base import count_parameters
from methods.harness.atomic import write_file_atomic
from methods.harness.checkpoint import LAST
from methods.harness.dist import DistEnv, barrier, init_distributed
from methods.harness.trainer import ResumeError, Trainer, TrainingDiverged


def environment(env: DistEnv, precision: str) -> dict:
    dev = env.device
    return {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": str(dev), "gpu_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "world_size": env.world, "hostname": socket.gethostname(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "precision": "bf16" if precision == "bf16" or (precision == "auto" and dev.type == "cuda") else "fp32",
    }


def check_existing(spec: RunSpec, rec_path: Path, run_dir: Path) -> dict | None:
    """The existing record, after refusing a changed training config under the same run id."""
    stored = None
    if rec_path.exists():
        try:
            stored = rec.read(rec_path)
        except rec.RecordError as e:
            raise RunError(f"{e}; move it away to start this run again") from None
        old_cfg = stored["config"]
    elif (run_dir / "config.json").exists():
        old_cfg = rec.json.loads((run_dir / "config.json").read_text())
    else:
        return None
    diff = rec.config_diff(rec.training_identity(old_cfg), rec.training_identity(spec.config))
    if diff:
        raise RunError(f"run '{spec.run_id}' exists with another training config ({'; '.join(diff)}); "
                       f"add tag=NAME for a new run or remove {rec_path} and {run_dir}")
    return stored


def waits_for_lock(spec: RunSpec) -> bool:
    return guard.waits_for_lock(spec.top.results_dir, spec.run_id)


def execute(spec: RunSpec) -> Path:
    results = Path(spec.top.results_dir)
    rec_path, run_dir = results / "records" / f"{spec.run_id}.json", results / "runs" / spec.run_id
    stored = check_existing(spec, rec_path, run_dir)
    todo = pending_points(spec, stored)
    if stored and stored["train"].get("status") == "finished" and not todo:
        print(f"{spec.run_id}: already complete, nothing to do. Record: {rec_path}")
        return rec_path
    ckpt = run_dir / "checkpoints" / LAST
    guard.refuse_lost_checkpoint(spec.run_id, stored, ckpt, spec.train.retrain, rec_path)

    torch.set_flush_denormal(True)
    env = init_distributed(spec.top.device)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        text = rec.json.dumps(spec.config, indent=1)      # atomic: the other ranks may be reading the old one
        write_file_atomic(run_dir / "config.json", lambda f: f.write(text), mode="w")
    torch.manual_seed(spec.top.seed)   # initialisation
    backbone = build_backbone(spec.model, spec.method.backbone_io(spec.data.spec))
    net = spec.method.build(backbone, spec.data.spec)
    preemption = Preemption(env, active=submitted())
    watch = QualityWatch.of(spec, run_dir)
    trainer = Trainer(spec.method, net, spec.data, spec.train, run_dir, spec.top.seed, env,
                      hooks=(preemption, watch) if watch else (preemption,))
    record = stored or rec.new_record(spec.run_id, spec.config, {}, {})
    guard.start_retrain(record, ckpt)
    record["env"] = environment(env, spec.train.precision)
    note = getattr(spec.method, "invariance_note", lambda world: None)(env.world)
    record["env"].update(world_size_invariant=note is None, world_size_note=note,
                         per_process_batch=spec.train.batch_size // env.world)
    record["params"] = {"network": count_parameters(net), "trainable": sum(
        p.numel() for p in net.parameters() if p.requires_grad)}
    try:
        summary = trainer.fit()
    except ResumeError as e:
        raise RunError(str(e)) from None
    except TrainingDiverged as e:
        if env.is_main:
            record["train"] = guard.diverged_summary(vars(trainer.summary(None)), e)
            rec.write_atomic(rec_path, record)
        raise RunError(str(e)) from None
    if watch:
        record["train_quality"] = watch.summary()
    if trainer.stop_reason is not None:                  # preempted: record the partial run, then requeue
        if env.is_main:
            record["train"] = vars(summary)
            rec.write_atomic(rec_path, record)
        preemption.finish()
    barrier(env)
    getattr(spec.data, "close", lambda: None)()          # the training loader's workers are not needed any more
    if env.is_main:
        record["train"] = vars(summary)
        record["geometry"] = batch_geometry(spec.config, spec.data, env.world, summary.steps)
        rec.write_atomic(rec_path, record)
    nets = lambda w: trainer.net if w == "raw" else trainer.ema.model(w)       # noqa: E731
    evaluate_run(EvalContext(spec, env, record if env.is_main else None, rec_path, run_dir, nets,
                             options=spec.eval.sampling_options(trainer.fast.precision),
                             before_point=preemption.between_points))
    if env.is_main:
        print(f"Record: {rec_path}")
    return rec_path

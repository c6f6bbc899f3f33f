"""``task=train`` (the default): train (or resume) -> evaluate every pending point -> write the run record.

``prepare`` is ``bench.config.prepare_train``; ``execute`` trains in the shared harness, then samples and
measures each (weights, NFE, guidance) point not yet in the record, rewriting the record after each one.
"""
from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import numpy as np
import torch

from bench import record as rec
from bench.artifacts import samples_name, save_reference
from bench.config import RunSpec, prepare_train as prepare  # noqa: F401 (the task's prepare)
from bench.data.tensor_source import on_split
from bench.errors import RunError
from bench.metrics import Evaluation
from bench.sampling import generate
from methods.backbones import build_backbone
from methods.base import count_parameters
from methods.harness.dist import DistEnv, barrier, init_distributed
from methods.harness.trainer import Trainer, TrainingDiverged


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


def pending_points(spec: RunSpec, stored: dict | None) -> list[tuple[str, int, float]]:
    if stored is None:
        return spec.points
    todo = []
    for w, nfe, g in spec.points:
        ev = rec.find_eval(stored, (w, nfe, g, spec.eval.num_samples, spec.eval.seed, spec.eval.split))
        if ev is None or not set(spec.metrics) <= set(ev["metrics"]):
            todo.append((w, nfe, g))
    return todo


def eval_labels(spec: RunSpec) -> torch.Tensor | None:
    """Class labels for conditional sampling: classes in turn, an equal number each (as FID-50K's 50 per
    class); None for unconditional methods."""
    if not spec.method.conditional:
        return None
    return torch.arange(spec.eval.num_samples) % spec.data.spec.num_classes


def execute(spec: RunSpec) -> Path:
    results = Path(spec.top.results_dir)
    rec_path, run_dir = results / "records" / f"{spec.run_id}.json", results / "runs" / spec.run_id
    stored = check_existing(spec, rec_path, run_dir)
    todo = pending_points(spec, stored)
    if stored and stored["train"].get("status") == "finished" and not todo:
        print(f"{spec.run_id}: already complete, nothing to do. Record: {rec_path}")
        return rec_path

    torch.set_flush_denormal(True)
    env = init_distributed(spec.top.device)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(rec.json.dumps(spec.config, indent=1))
    torch.manual_seed(spec.top.seed)   # initialisation
    backbone = build_backbone(spec.model, spec.method.backbone_io(spec.data.spec))
    net = spec.method.build(backbone, spec.data.spec)
    trainer = Trainer(spec.method, net, spec.data, spec.train, run_dir, spec.top.seed, env)
    record = stored or rec.new_record(spec.run_id, spec.config, {}, {})
    record["env"] = environment(env, spec.train.precision)
    record["params"] = {"network": count_parameters(net), "trainable": sum(
        p.numel() for p in net.parameters() if p.requires_grad)}
    try:
        summary = trainer.fit()
    except TrainingDiverged as e:
        if env.is_main:
            record["train"] = {**vars(trainer.summary(None)), "status": "diverged", "error": str(e)}
            rec.write_atomic(rec_path, record)
        raise RunError(str(e)) from None
    barrier(env)
    if not env.is_main:
        return rec_path
    record["train"] = vars(summary)
    rec.write_atomic(rec_path, record)
    for weights, nfe, guidance in todo:
        net_w = trainer.net if weights == "raw" else trainer.ema.model(weights)
        print(f"{spec.run_id}: sampling {spec.eval.num_samples} with {weights}, NFE {nfe}, guidance {guidance}")
        evaluation = Evaluation(spec.metrics, on_split(spec.data, spec.eval.split), spec.eval.num_samples,
                                spec.eval.metric_options(env.device))
        gen = generate(spec.method, net_w, spec.eval.num_samples, spec.eval.seed, nfe, guidance,
                       spec.eval.batch_size, labels=eval_labels(spec), latency_repeats=spec.eval.latency_repeats,
                       on_batch=evaluation.add, keep=spec.eval.save_samples)
        result = evaluation.finish()
        rec.upsert_eval(record, {
            "weights": weights, "nfe": nfe, "nfe_measured": gen.nfe_measured, "guidance": guidance,
            "n_samples": spec.eval.num_samples, "seed": spec.eval.seed, "split": spec.eval.split, "metrics": result.values,
            "metric_sources": result.sources, "timing": {**gen.timing, "metrics_seconds": result.seconds}})
        rec.write_atomic(rec_path, record)
        if spec.eval.split == "test":               # validation points choose; the report draws test samples
            np.save(run_dir / samples_name(weights, nfe, guidance), gen.samples.numpy())
        save_reference(run_dir, lambda: spec.data.reference(spec.eval.num_samples)[0].numpy(), spec.data.spec.kind)
        shown = ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=n/a" for k, v in result.values.items())
        print(f"  NFE measured {gen.nfe_measured:g}; {shown}")
    print(f"Record: {rec_path}")
    return rec_path

"""``python -m bench.run task=evaluate run=<run_id> [eval=PRESET eval.KEY=...]``: evaluate a run's kept
checkpoints without training (over every process of the job: ``torchrun``, SLURM tasks).

The run's training config comes from ``<results_dir>/runs/<run_id>/config.json`` (written when it started);
the ``eval`` section from this command. Without ``run=``, the command's own method/data/model/train/seed
name the run, as for training. ``eval.checkpoints`` (``last``, ``all`` or K) picks the checkpoints
(``bench.evaluation.checkpoints``); points at an earlier checkpoint carry its ``checkpoint_step`` in the
record, beside the final ones, for quality over training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import record as rec
from bench.config import RunSpec, TopConfig, prepare_train
from bench.errors import ConfigError, RunError
from bench.evaluation.checkpoints import load_weights, select
from bench.evaluation.loop import EvalContext, evaluate_run
from bench.evaluation.protocol import checkpoint_choice
from bench.tasks.train import check_existing, environment
from methods.backbones import build_backbone
from methods.base import count_parameters
from methods.harness.dist import init_distributed
from methods.harness.ema import EMASet


@dataclass
class EvaluateSpec:
    run: RunSpec
    top: TopConfig
    checkpoints: list[Path]


def stored_config(results: Path, run_id: str) -> dict:
    path = results / "runs" / run_id / "config.json"
    if not path.is_file():
        known = sorted(p.name for p in (results / "runs").glob("*") if (p / "config.json").is_file())
        raise ConfigError(f"run={run_id}: no run of that id in {results / 'runs'} (runs there: "
                          f"{', '.join(known) or 'none'})")
    return json.loads(path.read_text())


def prepare(plain: dict, top: TopConfig) -> EvaluateSpec:
    results = Path(top.results_dir)
    if plain.get("run"):
        stored = stored_config(results, plain["run"])
        plain = {**stored, "eval": plain["eval"], "run": plain["run"], "task": top.task,
                 "device": top.device, "results_dir": top.results_dir}
        top = TopConfig(seed=stored["seed"], tag=stored.get("tag"), device=top.device,
                        results_dir=top.results_dir, task=top.task)
    spec = prepare_train(plain, top)
    run_dir = results / "runs" / spec.run_id
    try:
        check_existing(spec, results / "records" / f"{spec.run_id}.json", run_dir)
    except RunError as e:
        raise ConfigError(str(e)) from None
    found = select(run_dir / "checkpoints", checkpoint_choice(str(spec.eval.checkpoints)))
    if not found:
        raise ConfigError(f"run '{spec.run_id}' has no checkpoint in {run_dir / 'checkpoints'}: train it first "
                          f"(the same command with task=train)")
    return EvaluateSpec(spec, top, found)


def execute(espec: EvaluateSpec) -> Path:
    spec = espec.run
    results = Path(spec.top.results_dir)
    rec_path, run_dir = results / "records" / f"{spec.run_id}.json", results / "runs" / spec.run_id
    torch.set_flush_denormal(True)
    env = init_distributed(spec.top.device)
    torch.manual_seed(spec.top.seed)
    net = spec.method.build(build_backbone(spec.model, spec.method.backbone_io(spec.data.spec)), spec.data.spec)
    net = net.to(env.device).eval()
    ema = EMASet(net, spec.train.ema)
    record = None
    if env.is_main:
        params = {"network": count_parameters(net),
                  "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad)}
        record = rec.read(rec_path) if rec_path.exists() else rec.new_record(
            spec.run_id, spec.config, environment(env, spec.train.precision), params)
    nets = lambda w: net if w == "raw" else ema.model(w)       # noqa: E731
    for path in espec.checkpoints:
        step = load_weights(path, net, ema, spec.method, env.device)
        if env.is_main and not record["train"]:
            record["train"] = {"status": "unrecorded", "steps": step}
        final = step >= spec.train.steps
        if env.is_main:
            print(f"{spec.run_id}: checkpoint {path.name} (step {step}{', final' if final else ''})")
        evaluate_run(EvalContext(spec, env, record, rec_path, run_dir, nets, None if final else step))
    if env.is_main:
        print(f"Record: {rec_path}")
    return rec_path

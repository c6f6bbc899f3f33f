"""The evaluation loop shared by ``task=train`` (after training) and ``task=evaluate`` (kept checkpoints).

For every (weights, NFE) series and guidance scale of the sweep (``bench.evaluation.sweep``), every rank
samples its shard of the point (``bench.evaluation.shard``; sample i: noise seed ``eval.seed + i``, label
``labels[i]``), decodes it where the data source has a ``decode`` hook (latents), streams it through the
metrics' feature extractors and, when asked, into its part of the ADM ``.npz``; features are gathered to
rank 0, which computes the metrics, runs the memorisation check and rewrites the record after each point.
Points already in the record (same weights, NFE, guidance, samples, seed, checkpoint and metrics) are
skipped, so an interrupted evaluation resumes.

Timing per point (``timing``): rank 0's sampling timing as ``bench.sampling.generate`` measures it, plus
``world_size``, samples/s and feature images/s per process (mean over ranks), the point's wall-clock and
``device_minutes`` (processes x wall-clock): what one point costs on this hardware.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Callable

import numpy as np
from torch import nn

from bench import artifacts
from bench import record as rec
from bench.evaluation import adm, memorisation, sweep
from bench.evaluation.labels import eval_labels
from bench.data.tensor_source import on_split
from bench.evaluation.shard import broadcast, gather_objects, gather_rows, shard
from bench.metrics import Evaluation
from bench.sampling import generate
from methods.harness.dist import DistEnv, barrier

Point = tuple[str, int, float, int]          # weights, nfe, guidance, n_samples


@dataclass
class EvalContext:
    spec: object                             # bench.config.RunSpec
    env: DistEnv
    record: dict | None                      # rank 0 only
    rec_path: Path
    run_dir: Path
    net: Callable[[str], nn.Module]          # weights name -> network
    step: int | None = None                  # checkpoint step; None: the run's final weights
    bank: memorisation.TrainBank | None = field(default=None, repr=False)
    extract: Callable | None = field(default=None, repr=False)
    options: object | None = None            # bench.sampling_fast.SamplingOptions (precision, compile, repeats)
    before_point: Callable[[], None] | None = None   # e.g. a preemption check: requeue before the next point


def labels_for(spec, n: int):
    if not spec.method.conditional:
        return None
    return eval_labels(spec.eval.labels, n, spec.data.spec.num_classes)


def done(spec, record: dict | None, point: Point, step: int | None) -> bool:
    if record is None:
        return False
    w, nfe, g, n = point
    ev = rec.find_eval(record, (w, nfe, g, n, spec.eval.seed, spec.eval.split), step)
    return ev is not None and set(spec.metrics) <= set(ev["metrics"])


def value(spec, record: dict | None, point: Point, step: int | None, metric: str) -> float | None:
    w, nfe, g, n = point
    ev = rec.find_eval(record, (w, nfe, g, n, spec.eval.seed, spec.eval.split), step) if record else None
    return None if ev is None else ev["metrics"].get(metric)


def series_of(spec) -> list[tuple[str, int]]:
    return list(dict.fromkeys((w, nfe) for w, nfe, _ in spec.points))


def stage_points(spec, record: dict | None, w: str, nfe: int, step: int | None) -> list[list[Point]]:
    """The points of one series, stage by stage (the fine stage of a coarse-to-fine search is planned
    from the coarse values in ``record``; it is empty while those are missing)."""
    ev, scales = spec.eval, sweep.scales_of(spec.eval.guidance, spec.eval.guidance_grid)
    if ev.search == "grid" or len(scales) == 1:
        return [[(w, nfe, g, ev.num_samples) for g in scales]]
    coarse = [(w, nfe, g, ev.search_samples) for g in scales]
    metric = sweep.search_metric(ev.search_metric, spec.metrics)
    values = {p[2]: value(spec, record, p, step, metric) for p in coarse}
    if any(v is None for v in values.values()):
        return [coarse, []]
    return [coarse, [(w, nfe, g, ev.num_samples) for g in sweep.refine(scales, values)]]


def pending_points(spec, stored: dict | None, step: int | None = None) -> list[Point]:
    """Points still to evaluate (a coarse-to-fine search counts its fine stage once it can be planned)."""
    todo = []
    for w, nfe in series_of(spec):
        stages = stage_points(spec, stored, w, nfe, step)
        todo += [p for stage in stages for p in stage if not done(spec, stored, p, step)]
        if len(stages) == 2 and not stages[1]:
            todo.append((w, nfe, float("nan"), spec.eval.num_samples))     # the fine stage, not yet planned
    return todo


def evaluate_run(ctx: EvalContext) -> None:
    """Every pending point of every series, on every rank; rank 0 writes the record and the sweeps."""
    for w, nfe in series_of(ctx.spec):
        stages = _plan(ctx, w, nfe)
        _run(ctx, stages[0])
        if len(stages) == 2:                       # coarse to fine: planned from the coarse values just measured
            stages = _plan(ctx, w, nfe)
            _run(ctx, stages[1])
        if ctx.env.is_main:
            record_sweep(ctx, w, nfe, stages)


def _plan(ctx: EvalContext, w: str, nfe: int) -> list[list[Point]]:
    plan = stage_points(ctx.spec, ctx.record, w, nfe, ctx.step) if ctx.env.is_main else None
    return broadcast(plan, ctx.env)


def _run(ctx: EvalContext, points: list[Point]) -> None:
    todo = [p for p in points if not done(ctx.spec, ctx.record, p, ctx.step)] if ctx.env.is_main else None
    for point in broadcast(todo, ctx.env):
        if ctx.before_point is not None:
            ctx.before_point()
        evaluate_point(ctx, point)


def record_sweep(ctx: EvalContext, w: str, nfe: int, stages: list[list[Point]]) -> None:
    spec, ev = ctx.spec, ctx.spec.eval
    scales = sweep.scales_of(ev.guidance, ev.guidance_grid)
    metric = sweep.search_metric(ev.search_metric, spec.metrics)
    if len(scales) < 2 or metric is None:
        return
    final = stages[-1]
    values = {p[2]: value(spec, ctx.record, p, ctx.step, metric) for p in final}
    coarse = {p[2]: value(spec, ctx.record, p, ctx.step, metric) for p in stages[0]} if len(stages) == 2 else None
    others = {p[2]: rec.find_eval(ctx.record, (*p, ev.seed, ev.split), ctx.step)["metrics"] for p in final}
    key = {"weights": w, "nfe": nfe, "checkpoint_step": ctx.step, "n_samples": ev.num_samples, "seed": ev.seed,
           "split": ev.split}
    entry = sweep.sweep_entry(key, metric, ev.search, scales, values, coarse,
                              ev.search_samples if coarse is not None else None, others)
    sweep.upsert_sweep(ctx.record, entry)
    rec.write_atomic(ctx.rec_path, ctx.record)
    if entry["best_guidance"] is not None:
        print(f"  best {metric} {entry['best_value']:.4g} at guidance {entry['best_guidance']:g} ({w}, NFE {nfe})")


def evaluate_point(ctx: EvalContext, point: Point) -> None:
    spec, env, ev = ctx.spec, ctx.env, ctx.spec.eval
    w, nfe, g, n = point
    t0 = time.perf_counter()
    rows = shard(n, env)
    labels = labels_for(spec, n)
    full = n == ev.num_samples
    if env.is_main:
        print(f"{spec.run_id}: sampling {n} with {w}, NFE {nfe}, guidance {g}"
              + (f" at step {ctx.step}" if ctx.step is not None else "") + f" on {env.world} process(es)")
    evaluation = Evaluation(spec.metrics, on_split(spec.data, ev.split), ev.num_samples, ev.metric_options(env.device))
    value_range = spec.data.spec.value_range
    writer = None
    if ev.adm_samples:
        name = artifacts.adm_samples_name(w, nfe, g, n, ctx.step)
        writer = adm.ShardWriter(ctx.run_dir / "adm" / ".parts" / f"{name}.rank{env.rank}.npy", len(rows),
                                 value_range, ev.quantize)

    def on_batch(x, y):
        evaluation.add(x, y)
        if writer is not None:
            writer.add(x)

    keep = 0                                      # rank 0 keeps the first samples: the .npy and the queries
    if env.is_main and full and (ctx.step is None or ev.memorisation):
        keep = None if ev.save_samples is None else max(ev.save_samples, ev.memorisation)
    gen = generate(spec.method, ctx.net(w), len(rows), ev.seed + rows.start, nfe, g, ev.batch_size,
                   labels=None if labels is None else labels[rows.start:rows.stop],
                   latency_repeats=ev.latency_repeats if env.is_main else 0, on_batch=on_batch, keep=keep,
                   options=ctx.options, decode=getattr(spec.data, "decode", None))
    local = {"n": len(rows), "rows": gen.nfe_measured * len(rows), "sample_seconds": gen.timing["sample_seconds"],
             "feature_seconds": dict(evaluation.seconds)}
    evaluation.gather(lambda t: gather_rows(t, env))
    ranks = gather_objects(local, env)
    adm_info = _assemble_adm(ctx, writer, point, labels)
    result = evaluation.finish() if env.is_main else None
    wall = time.perf_counter() - t0                # the point's cost; the memorisation check is extra
    mem = _memorisation(ctx, point, gen.samples if env.is_main else None) if ev.memorisation and full else None
    if not env.is_main:
        return
    timing = {**gen.timing, **cost(ranks, wall), "metrics_seconds": result.seconds}
    entry = {"weights": w, "nfe": nfe, "nfe_measured": sum(r["rows"] for r in ranks) / n, "guidance": g,
             "n_samples": n, "seed": ev.seed, "split": ev.split, "checkpoint_step": ctx.step, "metrics": result.values,
             "metric_sources": result.sources, "timing": timing,
             "labels": ev.labels if labels is not None else None}
    entry.update({k: v for k, v in (("adm_samples", adm_info), ("memorisation", mem)) if v is not None})
    if not full:
        entry["search_stage"] = "coarse"          # eval.search_samples: ranks scales, not reported
    rec.upsert_eval(ctx.record, entry)
    rec.write_atomic(ctx.rec_path, ctx.record)
    if full and ctx.step is None and ev.split == "test":   # validation points choose; the report draws test samples
        np.save(ctx.run_dir / artifacts.samples_name(w, nfe, g), gen.samples.numpy())
        artifacts.save_reference(ctx.run_dir, lambda k: spec.data.reference(min(k, ev.num_samples))[0].numpy(),
                                 spec.data.spec.kind)
    shown = ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=n/a" for k, v in result.values.items())
    print(f"  NFE measured {entry['nfe_measured']:g}; {shown}")


def cost(ranks: list[dict], wall: float) -> dict:
    """Throughput per process (mean over ranks) and the point's cost in process-minutes."""
    feats = {name: mean(r["n"] / r["feature_seconds"][name] for r in ranks if r["feature_seconds"].get(name))
             for name in ranks[0]["feature_seconds"]}
    return {"world_size": len(ranks),
            "samples_per_second_per_process": mean(r["n"] / r["sample_seconds"] for r in ranks if r["sample_seconds"]),
            "feature_images_per_second_per_process": {k: round(v, 3) for k, v in feats.items()},
            "point_wall_seconds": round(wall, 3), "device_minutes": round(len(ranks) * wall / 60, 4)}


def _assemble_adm(ctx: EvalContext, writer, point: Point, labels) -> dict | None:
    if writer is None:
        return None
    writer.close()
    barrier(ctx.env)
    if not ctx.env.is_main:
        return None
    name = artifacts.adm_samples_name(*point, ctx.step)
    parts = [writer.path.with_name(f"{name}.rank{r}.npy") for r in range(ctx.env.world)]
    out = ctx.run_dir / "adm" / name
    digest = adm.assemble(out, parts, None if labels is None else labels.numpy())
    if not any(writer.path.parent.iterdir()):
        writer.path.parent.rmdir()
    return {"file": f"adm/{name}", "samples_sha256": digest, "quantize": ctx.spec.eval.quantize}


def _memorisation(ctx: EvalContext, point: Point, samples) -> dict | None:
    spec, ev = ctx.spec, ctx.spec.eval
    if ctx.bank is None:
        ctx.extract = memorisation_extractor(spec, ctx.env)
        ctx.bank = memorisation.TrainBank(spec.data, ctx.extract, ctx.env, ev.feature_batch_size)
    queries = samples[:ev.memorisation] if ctx.env.is_main else None
    found = memorisation.nearest_training(queries, ctx.bank, ctx.extract, ctx.env, ev.memorisation_k,
                                          ev.feature_batch_size)
    if not ctx.env.is_main:
        return None
    path = ctx.run_dir / artifacts.memorisation_name(*point, ctx.step)
    info = {"extractor": ev.memorisation_features, "similarity": "cosine"}
    return memorisation.write_grid(path, queries, *found, ctx.bank.get, spec.data.spec.value_range, info)


def memorisation_extractor(spec, env: DistEnv) -> Callable:
    from bench.evaluation.clip import ClipFeatures, source

    choice = spec.eval.memorisation_features
    if source(choice) is not None:
        return ClipFeatures(choice, spec.data.spec.value_range, env.device)
    from bench.metrics.inception import InceptionExtractor

    inception = InceptionExtractor(spec.data, spec.eval.metric_options(env.device))
    return lambda x: inception(x)["features"]

"""``python -m bench.doctor <the run's overrides>``: check on this node what a run will need before it
spends GPU-hours, one line per check, each failure with how to fix it. Exit 0 when all pass, 1 otherwise
(2 when the config itself is refused). Submitted jobs (``bench.jobs``) run ``preflight`` first and stop
early on a failure.

Checks: the config (everything ``bench.run`` validates: data root and layout, encoder checkpoint and
hash, metric weights...), then one line each for what the data source and the method report about
themselves, the metrics' extractors (Inception weights, the reference batch), the device (CUDA, NCCL
for several processes, bf16, compile), free disk for checkpoints and samples, and write access to the
results folder (by writing: permission bits do not stop root).

A data source or a method joins in by defining ``preflight() -> list[(name, ok, detail)]`` (the detail of
a failure says how to fix it): e.g. a latent cache reports its files and VAE, a feature-space method its
encoder. Nothing here knows the sources by name.
"""
from __future__ import annotations

import math
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ConfigError, RunError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def _own(obj) -> list[Check]:
    """What a data source or method says about itself (its optional ``preflight``)."""
    return [Check(*c) for c in (getattr(obj, "preflight", None) or (lambda: []))()]


def _metrics(spec) -> list[Check]:
    from bench.metrics.registry import family_of

    out = []
    for ext in sorted({family_of(m).extractor for m in spec.metrics}):
        names = [m for m in spec.metrics if family_of(m).extractor == ext]
        why = [r for r in {family_of(m).unavailable(spec.data, spec.eval.metric_options()) for m in names} if r]
        out.append(Check(f"metrics ({ext})", not why, "; ".join(why) or ", ".join(names)))
    return out


def _device(spec, world: int) -> list[Check]:
    import torch

    from methods.harness.dist import select_device

    dev = select_device(spec.top.device)
    out = [Check("device", True, f"{dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))]
    if world > 1:
        import torch.distributed as dist
        backend, ok = ("nccl", dist.is_nccl_available()) if dev.type == "cuda" else ("gloo", dist.is_gloo_available())
        out.append(Check("process group", ok, f"{backend} for {world} processes" if ok else
                         f"torch has no {backend} backend; install a torch build with it"))
    if spec.train.precision == "bf16" or (spec.train.precision == "auto" and dev.type == "cuda"):
        ok = dev.type != "cuda" or torch.cuda.is_bf16_supported()
        out.append(Check("bf16", ok, "autocast to bfloat16" if ok else
                         f"{torch.cuda.get_device_name(dev)} has no bf16; set train.precision=fp32"))
    if getattr(spec.train, "compile", False):
        try:
            torch.compile(lambda t: t * 2)(torch.ones(2, device=dev))
            out.append(Check("compile", True, "torch.compile works"))
        except Exception as e:   # noqa: BLE001 (inductor fails in many ways: missing compiler, triton)
            out.append(Check("compile", False, f"torch.compile fails ({type(e).__name__}); set train.compile=false"))
    return out


def _disk(spec) -> Check:
    import torch

    from methods.backbones import build_backbone
    from methods.base import count_parameters

    with torch.device("meta"):
        n = count_parameters(build_backbone(spec.model, spec.method.backbone_io(spec.data.spec)))
    ckpt = n * 4 * (3 + len(spec.train.ema)) * 2          # weights, AdamW moments, EMAs; old + new file
    shape = math.prod(spec.data.spec.shape)
    samples = len(spec.points) * min(spec.eval.num_samples, spec.eval.save_samples or spec.eval.num_samples) * shape * 4
    results = Path(spec.top.results_dir)
    free = shutil.disk_usage(next(p for p in [results, *results.resolve().parents] if p.exists())).free
    need = ckpt + samples
    gb = lambda b: f"{b / 1e9:.2f} GB"  # noqa: E731
    return Check("disk", free > need, f"{gb(need)} for checkpoints and samples, {gb(free)} free" if free > need else
                 f"{gb(need)} needed for checkpoints and samples, {gb(free)} free under {results}; free space or "
                 f"point results_dir= elsewhere")


def _writable(results_dir: str) -> Check:
    results = Path(results_dir)
    for sub in ("records", "runs"):
        probe = results / sub / f".doctor-{uuid.uuid4().hex}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            return Check("results", False, f"cannot write in {probe.parent} ({e.strerror or e}); "
                                           f"point results_dir= at a writable folder")
    return Check("results", True, f"{results} is writable")


def checks(spec, world: int = 1) -> list[Check]:
    """Every check of a validated run spec (``bench.tasks.prepare``)."""
    out = [Check("config", True, f"{getattr(spec, 'run_id', spec)} ({world} process{'es' * (world > 1)})"),
           _writable(spec.top.results_dir)]
    if not hasattr(spec, "points"):           # not a training run (e.g. encoder pretraining)
        return out + _own(getattr(spec, "data", None))
    return out + _own(spec.data) + _own(spec.method) + _metrics(spec) + _device(spec, world) + [_disk(spec)]


def preflight(spec) -> None:
    """Run in a submitted job before anything else: a ``RunError`` naming the first failed check."""
    from methods.harness.dist import env_rank_world

    failed = [c for c in checks(spec, env_rank_world()[1]) if not c.ok]
    if failed:
        raise RunError(f"preflight failed: {failed[0].name}: {failed[0].detail}")


def main(argv: list[str] | None = None) -> int:
    from bench.cluster import launch_plan, planned_world
    from bench.config import compose_config
    from bench.tasks import prepare

    argv = sys.argv[1:] if argv is None else argv
    cfg = None
    try:
        cfg = compose_config([a for a in argv if a not in ("-m", "--multirun")])
        plan = launch_plan(cfg)
        with planned_world(plan.world):
            spec = prepare(cfg)
    except ConfigError as e:
        print(Check("config", False, str(e)).line())
        if cfg is not None:
            print(_writable(str(cfg.results_dir)).line())
        return 2
    results = checks(spec, plan.world)
    print("\n".join(c.line() for c in results))
    return 0 if all(c.ok for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())

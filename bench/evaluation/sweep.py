"""The guidance sweep (PAPER.md section 3): every reported FID is the best over a grid of guidance scales.

- ``eval.guidance_grid`` names a grid, or ``eval.guidance`` lists the scales: drifting's alpha grids of
  the release (``release`` for B/2, L/2 and the pixel models, ``ablation`` for the ablation runs), and
  ``cfg`` for the baselines' classifier-free guidance scale w (1 = none; DiT-XL/2's best FID is at 1.5).
- ``eval.search=grid`` evaluates every scale at ``eval.num_samples``; ``coarse_to_fine`` evaluates every
  scale at ``eval.search_samples`` first, then only the best scale and its grid neighbours at
  ``eval.num_samples`` (FID at fewer samples is biased upward, so only scales at equal counts are
  compared).
- The best value of ``eval.search_metric`` (lower is better; null: ``fid`` where measured, else the
  first of ``LOWER_IS_BETTER`` measured) and its scale go into the record's ``sweeps`` list, one entry
  per (weights, NFE, checkpoint, samples, seed).
"""
from __future__ import annotations

GRIDS: dict[str, tuple[float, ...]] = {
    "release": (1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5),   # PAPER.md 3 [code]: B/2, L/2, pixel
    "ablation": (1.0, 1.5, 2.0, 2.5, 3.0, 3.5),                       # PAPER.md 3 [code]: the ablation runs
    "cfg": (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0),               # baselines' CFG scale w
}
SEARCHES = ("grid", "coarse_to_fine")
# Metrics a sweep can minimise (the report's bench/report/metric_info.py says the same of them).
LOWER_IS_BETTER = ("fid", "fd_dinov2", "fd_domain", "fd_raw", "kid", "kid_domain", "energy", "w2", "swd", "mmd")


def scales_of(guidance: list[float], grid: str | None) -> list[float]:
    if grid is None:
        return [float(g) for g in guidance]
    if grid not in GRIDS:
        raise ValueError(f"eval.guidance_grid: unknown grid '{grid}'; choose one of: {', '.join(GRIDS)} "
                         f"(or null and list eval.guidance)")
    return list(GRIDS[grid])


def search_metric(asked: str | None, metrics: list[str]) -> str | None:
    """The metric a sweep minimises; None when no measured metric can rank the scales."""
    if asked is not None:
        if asked not in LOWER_IS_BETTER:
            raise ValueError(f"eval.search_metric: '{asked}' is not a lower-is-better metric; choose one of: "
                             f"{', '.join(LOWER_IS_BETTER)}")
        if asked not in metrics:
            raise ValueError(f"eval.search_metric={asked} is not measured; add it to eval.metrics or name "
                             f"one of: {', '.join(metrics)}")
        return asked
    return next((m for m in LOWER_IS_BETTER if m in metrics), None)


def best(values: dict[float, float | None]) -> tuple[float, float] | None:
    """(scale, value) of the lowest finite value; ties go to the smaller scale."""
    found = [(v, g) for g, v in values.items() if v is not None]
    if not found:
        return None
    v, g = min(found)
    return g, v


def refine(scales: list[float], coarse: dict[float, float | None]) -> list[float]:
    """The scales of the fine stage: the coarse best and its neighbours in the grid (all when none ranks)."""
    top = best(coarse)
    if top is None:
        return list(scales)
    i = scales.index(top[0])
    return scales[max(0, i - 1): i + 2]


def sweep_entry(key: dict, metric: str, search: str, scales: list[float], values: dict[float, float | None],
                coarse: dict[float, float | None] | None, search_samples: int | None,
                others: dict[float, dict]) -> dict:
    """The record's summary of one sweep; ``others``: every metric at each evaluated scale."""
    top = best(values)
    return {**key, "metric": metric, "search": search, "grid": scales, "search_samples": search_samples,
            "values": {f"{g:g}": v for g, v in values.items()},
            "coarse": None if coarse is None else {f"{g:g}": v for g, v in coarse.items()},
            "best_guidance": None if top is None else top[0], "best_value": None if top is None else top[1],
            "at_best": None if top is None else others.get(top[0])}


def upsert_sweep(record: dict, entry: dict) -> None:
    ident = ("weights", "nfe", "checkpoint_step", "n_samples", "seed", "metric")
    same = lambda s: (all(s.get(k) == entry.get(k) for k in ident)                     # noqa: E731
                      and s.get("split", "test") == entry.get("split", "test"))
    record["sweeps"] = [s for s in record.get("sweeps", []) if not same(s)] + [entry]

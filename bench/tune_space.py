"""Conditional parts of a search space (``hydra.sweeper.custom_search_space``): keys that only exist for
some values of a sampled key. The sweeper calls ``f(cfg, trial)`` after sampling the declared keys."""
from __future__ import annotations

FIXED = "++"            # a value fixed by the branch, not sampled: Hydra's force-override prefix
PRODUCTION_TEMPERATURES = ["[0.02,0.05,0.2]", "[0.05,0.2,0.5]", "[0.1,0.3,1.0]"]


def drifting(cfg, trial) -> None:
    """Algorithm 2 (the toy notebook) has one temperature; the production loss (PAPER.md 2.4-2.7) sums
    several and has the release's affinity floor (methods/drifting refuses production keys under alg2)."""
    if trial.params["method.loss"] == "alg2":
        trial.suggest_float("method.temperature", 0.01, 0.5, log=True)
        # Algorithm 2 refuses a changed floor, and a per-data preset may have changed it (grid25): keep the
        # default, under its own name (Hydra's "++key" override), since Optuna refuses one parameter with two
        # sets of choices in one study ("dynamic value space")
        trial.suggest_categorical(FIXED + "method.affinity_clamp", [1.0e-6])
    else:
        trial.suggest_categorical("method.temperatures", PRODUCTION_TEMPERATURES)
        trial.suggest_categorical("method.affinity_clamp", [0.0, 1.0e-6])

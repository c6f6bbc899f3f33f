"""Compose and validate a run's configuration before anything runs.

Hydra composes ``bench/conf``; every section is then checked against its typed schema (the dataclass of
the chosen method, backbone, dataset, and of the harness and evaluation), and every evaluation point
against what the method can do. Any problem is a ``ConfigError`` whose message is one line naming the
key and the valid choices, raised before training starts and before anything is written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from itertools import product
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from bench.errors import ConfigError
from methods.harness.train_config import TrainConfig

CONF_MODULE = "bench.conf"


@dataclass
class EvalConfig:
    nfe: list[int] | None = None
    guidance: list[float] = field(default_factory=lambda: [1.0])
    num_samples: int = 2500
    batch_size: int = 2500
    weights: list[str] = field(default_factory=lambda: ["ema_0.99"])
    metrics: list[str] | None = None
    seed: int = 1_000_000
    latency_repeats: int = 5
    inception_weights: str = "auto"       # auto | torch-fidelity | fid-helper | PATH (bench/metrics/inception.py)
    reference: str | None = None          # ADM reference batch .npz for the Inception metrics (ImageNet)
    cache_dir: str | None = None          # metric caches; null: $DRIFTBENCH_CACHE or ~/.cache/driftbench
    feature_batch_size: int = 250         # samples per feature-extractor call
    kid_subset_size: int = 1000
    save_samples: int | None = None       # samples saved per evaluation point (null: all; rank 0's share)
    precision: str = "train"              # train (the run's training precision) | fp32 | bf16
    compile: bool = False                 # torch.compile of the sampled network (bench/sampling_fast.py)
    cuda_graphs: bool = False             # CUDA graphs for the sampler (CUDA only)
    throughput_repeats: int = 3           # full evaluation batches timed at least (median and spread)
    # The evaluation protocol at scale (bench/evaluation/): labels, guidance sweep, ADM samples, memorisation
    labels: str = "balanced"              # balanced | blocks | PATH (bench/evaluation/labels.py)
    guidance_grid: str | None = None      # release | ablation | cfg: replaces eval.guidance (bench/evaluation/sweep.py)
    search: str = "grid"                  # grid | coarse_to_fine
    search_samples: int = 5000            # samples per scale in the coarse stage of coarse_to_fine
    search_metric: str | None = None      # minimised by the sweep; null: fid where measured, else the first distance
    quantize: str = "round"               # samples -> uint8 for image metrics: round | floor (ADM, the release)
    adm_samples: bool = False             # write each point's samples as the ADM evaluator's .npz
    memorisation: int = 0                 # generated images checked against their nearest training images (0: off)
    memorisation_k: int = 10              # nearest training images per generated one (the paper: 10)
    memorisation_features: str = "clip"   # clip | clip:HUB_ID_OR_PATH | inception (bench/evaluation/clip.py)
    checkpoints: str = "last"             # task=evaluate: last | all | K (the K newest kept checkpoints)
    split: str = "test"                   # test (the report's reference) | validation (tuning, choices)

    def metric_options(self, device: str = "cpu"):
        from bench.metrics import MetricOptions

        return MetricOptions(device=str(device), feature_batch_size=self.feature_batch_size, cache_dir=self.cache_dir,
                             inception_weights=self.inception_weights, reference=self.reference,
                             kid_subset_size=self.kid_subset_size, quantize=self.quantize)

    def sampling_options(self, train_precision: str):
        """How the sampler runs; ``precision: train`` samples in ``train_precision`` (bf16 or fp32)."""
        from bench.sampling_fast import SamplingOptions

        return SamplingOptions(precision=train_precision if self.precision == "train" else self.precision,
                               compile=self.compile, cuda_graphs=self.cuda_graphs,
                               throughput_repeats=self.throughput_repeats)


@dataclass
class TopConfig:
    seed: int = 0
    tag: str | None = None
    device: str = "auto"
    results_dir: str = "results"
    task: str = "train"                # a name of bench.tasks.TASKS (train, pretrain_encoder, ...)


@dataclass
class RunSpec:
    """A validated run: typed sections, built method and data, and the evaluation points."""

    config: dict                       # resolved config as plain data (stored in the record)
    run_id: str
    top: TopConfig
    method: Any
    model: dict
    data: Any
    train: TrainConfig
    eval: EvalConfig
    points: list[tuple[str, int, float]]
    metrics: list[str]


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The override lists of every job of a ``-m`` sweep (``a=1,2 b=x,y`` gives four jobs)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse overrides {overrides}: {str(e).splitlines()[0]}") from None
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(job) for job in product(*choices)]


def compose_config(overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_module(CONF_MODULE, version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=True)
    except MissingConfigException as e:
        group = (e.missing_cfg_file or "").split("/")[0]
        name = (e.missing_cfg_file or "").split("/")[-1]
        raise ConfigError(f"unknown {group} '{name}'; choose one of: {', '.join(e.options or [])}") from None
    except ConfigCompositionException as e:
        m = re.match(r"Could not override '([^']+)'", str(e))
        profile = re.match(r"In 'cluster/([^']+)'", str(e))
        if profile:            # a SLURM profile's keys do not exist for the local launchers
            raise ConfigError(f"cluster={profile.group(1)} is a SLURM profile; add launcher=slurm") from None
        if not m:
            raise ConfigError(str(e).splitlines()[0]) from None
        key = m.group(1)
        parent, _, leaf = key.rpartition(".")
        base = compose_config([o for o in overrides if not o.lstrip("+~").startswith(key + "=")])
        node = OmegaConf.select(base, parent) if parent else base
        valid = ", ".join(k for k in node.keys() if k != "hydra") if isinstance(node, DictConfig) else "none"
        raise ConfigError(f"unknown config key '{key}'; valid keys{' of ' + parent if parent else ''}: {valid}") from None
    except OverrideParseException as e:
        raise ConfigError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None


def typed(section: str, schema: type, values: Any):
    """``values`` checked against the dataclass ``schema``: unknown keys and wrong types are errors."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = f"{section}.{e.full_key}" if section else str(e.full_key)
        first = str(e).splitlines()[0]
        if "not in" in first:
            valid = ", ".join(f for f in schema.__dataclass_fields__)
            raise ConfigError(f"unknown config key '{key}'; valid keys{' of ' + section if section else ''}: "
                              f"{valid}") from None
        raise ConfigError(f"{key}: {first}") from None


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The config-group options a run was composed from (``model=dit_digits`` -> ``dit_digits``)."""
    hydra_node = cfg.hydra if "hydra" in cfg else HydraConfig.get()
    return {k: v for k, v in hydra_node.runtime.choices.items() if not k.startswith("hydra")}


def tuned_preset(choices: dict[str, str]):
    """The tuned preset a run applies (``tuning=tuned``, ``bench/conf/tuned/``), or None (no study yet)."""
    path = Path(__file__).parent / "conf" / "tuned" / f"{choices.get('tuned')}.yaml"
    return path if path.exists() else None


def run_id_of(choices: dict[str, str], top: TopConfig) -> str:
    """``method-data-model-s<seed>[-tuned][-tag]`` from the chosen config files, so presets never collide; a
    recipe names the run: ``<recipe>-s<seed>[-tag]``."""
    rid = f"{choices['method']}-{choices['data']}-{choices['model']}-s{top.seed}"
    if choices.get("recipe"):
        rid = f"{choices['recipe']}-s{top.seed}"
    elif choices.get("tuning", "none") != "none" and tuned_preset(choices):    # it changes the training config
        rid += f"-{choices['tuning']}"
    if top.tag:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", top.tag):
            raise ConfigError(f"tag='{top.tag}' may only hold letters, digits and _ . + -")
        rid += f"-{top.tag}"
    return rid


def _build(section: str, factory, *args):
    try:
        return factory(*args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if e.args else str(e)
        raise ConfigError(msg if section in msg else f"{section}: {msg}") from None


def data_args(d_cfg) -> tuple[str, ...]:
    """The ``data.KEY=VALUE`` settings of a data config that differ from its defaults."""
    return tuple(f"data.{f.name}={getattr(d_cfg, f.name)}" for f in fields(d_cfg)
                 if f.name != "name" and getattr(d_cfg, f.name) != f.default)


def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain data, without Hydra's own node, plus the group choices."""
    choices = group_choices(cfg)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["choices"] = choices
    return plain


def prepare_train(plain: dict, top: TopConfig) -> RunSpec:
    """Validate everything about a ``task=train`` config and build the method and data (no training).

    The heavy imports (torch, the data, metric and method registries) happen here, not at module level,
    so that composing and the torch-free checks (``bench.tasks.precheck``) answer in well under 2 s."""
    import torch

    from bench.data import dataset_entry
    from bench.data.tensor_source import SPLITS
    from bench.metrics import check_metrics, default_metrics, metric_names
    from methods.backbones import build_backbone
    from methods.base import NFEError
    from methods.harness.dist import env_rank_world, select_device
    from bench.evaluation.protocol import check_protocol
    from bench.evaluation.sweep import scales_of
    from methods.harness.fast_path import check_switches
    from methods.registry import backbone_class, method_class

    choices = plain["choices"]
    plain.pop("encoder", None)         # the encoder group configures task=pretrain_encoder only
    choices.pop("encoder", None)
    plain.pop("cache", None)           # task=cache_latents only
    train = typed("train", TrainConfig, plain["train"])
    ev = typed("eval", EvalConfig, plain["eval"])
    m_cls = _build("method", method_class, plain["method"]["name"])
    b_cls = _build("model", backbone_class, plain["model"]["name"])
    d_entry = _build("data", dataset_entry, plain["data"]["name"])
    m_cfg = typed("method", m_cls.Config, plain["method"])
    typed("model", b_cls.Config, plain["model"])
    d_cfg = typed("data", d_entry.config, plain["data"])
    method = _build("method", m_cls, m_cfg)
    data = _build("data", d_entry.build, d_cfg)
    if hasattr(method, "configure_backbone"):  # e.g. drifting feeds style indices to generators with them
        method.configure_backbone(plain["model"])
    with torch.device("meta"):   # the backbone fits the data (e.g. DiT patch size); no memory, no init cost
        _build("model", build_backbone, plain["model"], method.backbone_io(data.spec))
    _, world, local_rank = env_rank_world()
    device = _build("device", select_device, top.device, local_rank)
    _build("eval", ev.sampling_options("fp32").validate, device)
    _build("train", train.validate, world)
    if hasattr(method, "check_batch"):
        _build("method", method.check_batch, train.batch_size // world, world)
    _build("train", check_switches, method, train.compile, train.accum_steps)
    if hasattr(method, "check_data"):
        _build("method", method.check_data, data.spec, data_args(d_cfg))
    if hasattr(method, "resolved_config"):     # e.g. the hash of a referenced checkpoint
        plain["method"].update(method.resolved_config())

    nfes = ev.nfe if ev.nfe is not None else method.default_nfe()
    ema_names = ["raw"] + [f"ema_{d:g}" for d in train.ema]
    for w in ev.weights:
        if w not in ema_names:
            raise ConfigError(f"eval.weights: '{w}' is not kept by this run; choose from: {', '.join(ema_names)}")
    scales = _build("eval", scales_of, ev.guidance, ev.guidance_grid)
    for nfe in nfes:
        for g in scales:
            try:
                method.check_nfe(nfe, g)
            except NFEError as e:
                raise ConfigError(str(e)) from None
    if ev.split not in SPLITS:
        raise ConfigError(f"eval.split must be one of {', '.join(SPLITS)}, got '{ev.split}'")
    if ev.num_samples < 1 or ev.batch_size < 1:
        raise ConfigError("eval.num_samples and eval.batch_size must be >= 1")
    if ev.feature_batch_size < 1 or ev.kid_subset_size < 2:
        raise ConfigError("eval.feature_batch_size must be >= 1 and eval.kid_subset_size >= 2")
    options = ev.metric_options()
    metrics = ev.metrics if ev.metrics is not None else default_metrics(data, options)
    unknown = [m for m in metrics if m not in metric_names()]
    if unknown:
        raise ConfigError(f"eval.metrics: unknown {unknown}; choose from: {', '.join(metric_names())}")
    _build("eval.metrics", check_metrics, metrics, data, options)
    _build("eval", check_protocol, ev, method, data, metrics, world)
    points = [(w, n, float(g)) for w in ev.weights for n in nfes for g in scales]
    return RunSpec(config=plain, run_id=run_id_of(choices, top), top=top, method=method, model=plain["model"],
                   data=data, train=train, eval=ev, points=points, metrics=metrics)


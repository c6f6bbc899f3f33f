"""Drifting as a ``Method``: a one-step generator f(eps[, c, alpha]) (Deng et al. 2026; PAPER.md 1-3).

Two training paths share one config:

- **Unconditional** (``conditional: false``, the 2-D toys): each step generates as many samples as the batch
  holds real ones, splits both into groups of ``group_size`` of the *global* batch (``groups.py``: the same
  loss on 1 or N processes), and regresses the generated samples onto
  their drifted stop-gradient targets (Alg. 1, Eq. 6) with the generated group as its own negatives.
  ``loss: alg2`` is the official toy notebook's field (Alg. 2 on raw coordinates, one temperature, no
  normalisations); ``loss: production`` is ``loss.drift_loss`` (PAPER.md 2.4-2.7) with the switches below; ``loss: mmd``
  replaces V by the unnormalised Gaussian-kernel MMD gradient field (App. C.2, ``field.mmd_field``).
- **Class-conditional** (``conditional: true``; see ``conditional.py``): sample queues, training-time CFG
  with alpha conditioning, and the feature-space loss of a frozen MAE encoder (``encoder_path``) or, with
  ``encoder_path: null``, the production loss on the raw output alone (raw-pixel drifting).

The anti-symmetry ablation (Table 1: ``attraction``/``repulsion`` scales, ``repulsion: 0`` = attraction
only), the kernel normalisation (Table 11: ``kernel_norm``), the release's affinity floor
(``affinity_clamp``) and both normalisations are config values. Sampling is one forward pass: NFE = 1; an
alpha-conditioned model takes ``eval.guidance`` as alpha (>= 1), still one evaluation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from methods.base import BackboneIO, Batch, DataSpec, NFEError, per_image_noise
from methods.noise import keyed_randint
from methods.drifting.field import KERNEL_NORMS, drift_mse, drifting_field, mmd_field
from methods.drifting.groups import check_groups, global_batch, global_mean, spans_ranks
from methods.drifting.loss import DriftLossOptions, drift_loss
from methods.registry import register_method

LOSSES = ("alg2", "production", "mmd")
MAKE_ENCODER = "python -m bench.run task=pretrain_encoder data={data}"
DEFAULT_ENCODER = "digits_tiny"       # bench/conf/config.yaml's encoder group default
SHARED_DATA_KEYS = ("data.root", "data.split", "data.resolution", "data.num_classes", "data.any_resolution")


@register_method
class Drifting:
    name = "drifting"
    exact_accumulation = False
    accumulation_refused = ("the drift loss's scale S and normalisers lambda are means over the whole batch (all "
                            "classes and locations), which one micro-batch does not see; spread the batch over "
                            "more processes instead (S and lambda are all-reduced over them) or lower "
                            "train.batch_size")

    @dataclass
    class Config:
        name: str = "drifting"
        noise_dim: int | None = 32          # generator input size; null: noise of the output's shape (DiT)
        loss: str = "alg2"                  # alg2 (toy notebook) | production (PAPER.md 2.4-2.7) | mmd (C.2)
        temperature: float = 0.05           # alg2: kernel temperature (notebook: 0.05)
        bandwidth: float = 0.1              # mmd: Gaussian width (+method.bandwidth: not in the yaml, so older runs match)
        temperatures: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.2])   # production
        kernel_norm: str = "xy"             # xy | y | none (Table 11)
        affinity_clamp: float = 1e-6        # production: release's floor on row*col (0 disables)
        attraction: float = 1.0             # production: scale of attraction (Table 1)
        repulsion: float = 1.0              # production: scale of repulsion; 0 = attraction only
        normalize_distance: bool = True     # production: feature normalisation by S
        normalize_drift: bool = True        # production: drift normalisation by lambda
        max_elements: int | None = None     # production: chunk bound (memory); null: by device
        sync_scales: bool = True            # all-reduce S and lambda over processes (DDP)
        group_size: int | None = None       # unconditional: samples per group of the global batch; null: all
        collapse_to: list[float] | None = None   # unconditional: start collapsed onto this point (Fig. 3)
        collapse_steps: int = 300           # Adam steps of the collapsing pre-fit
        # class-conditional path (conditional.py)
        conditional: bool = False
        classes_per_step: int = 8           # N_c labels per step, global (split over the processes)
        gen_per_class: int = 64             # N_neg generated samples per label
        pos_per_class: int = 64             # N_pos positives per label (class queue)
        unc_per_class: int = 16             # N_unc unconditional negatives per label (global queue)
        class_queue: int = 128
        global_queue: int = 1000
        queue_fill: str = "global"          # global: every process pushes the global batch | local (release)
        queue_device: str = "same"          # same (the training device) | cpu (host memory, as the release)
        queue_dtype: str = "float32"        # float32 | float16 | bfloat16 | uint8 (images from uint8 pixels)
        cfg: bool = True                    # training-time CFG: alpha-conditioned generator
        alpha_min: float = 1.0
        alpha_max: float = 4.0
        alpha_exponent: float = 3.0         # p(alpha) ~ alpha^-k (Table 8: 3 ablation, 5 B/2 and pixel)
        no_cfg_frac: float = 0.0            # probability of alpha = 1 (L/2: 0.5)
        encoder_path: str | None = None     # frozen MAE encoder checkpoint; null: raw output only
        encoder_sha256: str | None = None   # expected hash; null: recorded from the file
        convnext: str | None = None         # ConvNeXt-V2 features added (pixel recipes): hub id or local folder
        raw_loss: bool = True               # also drift the raw flattened output ("global" key)
        patch_sizes: list[int] = field(default_factory=lambda: [2, 4])
        style: bool = True                  # feed random style indices (A.2) when the generator takes them
        log_keys: bool = False              # log diagnostics of every feature key, not only means

    def __init__(self, cfg: "Drifting.Config"):
        self.cfg = cfg
        self._validate()
        self.data_args: tuple[str, ...] = ()
        self.conditional = cfg.conditional
        self.opts = DriftLossOptions(kernel_norm=cfg.kernel_norm, affinity_clamp=cfg.affinity_clamp,
                                     attraction=cfg.attraction, repulsion=cfg.repulsion,
                                     normalize_distance=cfg.normalize_distance,
                                     normalize_drift=cfg.normalize_drift, max_elements=cfg.max_elements)
        self.opts.validate()
        self.cond_step = None
        self.model_style = False
        if cfg.conditional:
            from methods.drifting.conditional import ConditionalStep
            self.cond_step = ConditionalStep(cfg, self.opts)

    def _validate(self) -> None:
        c = self.cfg
        checks = [
            (c.loss in LOSSES, f"method.loss must be one of {list(LOSSES)}, got '{c.loss}'"),
            (c.kernel_norm in KERNEL_NORMS,
             f"method.kernel_norm must be one of {list(KERNEL_NORMS)}, got '{c.kernel_norm}'"),
            (c.temperature > 0, f"method.temperature must be > 0, got {c.temperature}"),
            (c.bandwidth > 0, f"method.bandwidth must be > 0, got {c.bandwidth}"),
            (bool(c.temperatures) and min(c.temperatures) > 0,
             f"method.temperatures must be values > 0, got {c.temperatures}"),
            (c.noise_dim is None or c.noise_dim >= 1, f"method.noise_dim must be >= 1 or null, got {c.noise_dim}"),
            (c.loss == "production" or (c.attraction, c.repulsion, c.affinity_clamp) == (1.0, 1.0, 1e-6)
             and c.normalize_distance and c.normalize_drift,
             "method.attraction/repulsion/affinity_clamp/normalize_* apply to loss=production; "
             "set method.loss=production"),
            (c.collapse_to is None or not c.conditional, "method.collapse_to applies to unconditional generators"),
            (c.collapse_steps >= 1, f"method.collapse_steps must be >= 1, got {c.collapse_steps}"),
            (not c.conditional or c.loss == "production",
             "method.conditional=true uses the production loss; set method.loss=production"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    # -- shapes and conditioning ----------------------------------------------------------------------
    def configure_backbone(self, model: dict) -> None:
        """Called with the model config before the backbone is built: a generator whose config has
        ``n_style_tokens > 0`` (the DiT) gets random style indices when ``method.style`` is on."""
        self.model_style = self.cfg.style and int(model.get("n_style_tokens", 0) or 0) > 0

    def noise_shape(self, spec: DataSpec) -> tuple[int, ...]:
        return spec.shape if self.cfg.noise_dim is None else (self.cfg.noise_dim,)

    def backbone_io(self, spec: DataSpec) -> BackboneIO:
        if self.cond_step is None:
            return BackboneIO(in_shape=self.noise_shape(spec), out_shape=spec.shape)
        return self.cond_step.backbone_io(spec, self.noise_shape(spec), self.model_style)

    def make_encoder_command(self, spec: DataSpec) -> str:
        """The command that writes the missing encoder checkpoint ``<results_dir>/encoders/<encoder>-<data>-s<seed>.pt``
        (the name ``task=pretrain_encoder`` gives it; e.g. the recipes' latent_256-imagenet_pixel-s0.pt)."""
        path = Path(self.cfg.encoder_path or "")
        named = re.fullmatch(r"([A-Za-z0-9_.]+)-([A-Za-z0-9_.]+)-s(\d+)", path.stem)
        encoder, data, seed = named.groups() if named else (DEFAULT_ENCODER, spec.name, "0")
        args = [a for a in self.data_args if data == spec.name or a.split("=")[0] in SHARED_DATA_KEYS]
        cmd = MAKE_ENCODER.format(data=data) + "".join(f" {a}" for a in args)
        cmd += (f" encoder={encoder}" if encoder != DEFAULT_ENCODER else "") + (f" seed={seed}" if seed != "0" else "")
        folder = path.parent
        if folder.name == "encoders" and folder.parent != Path("results"):
            cmd += f" results_dir={folder.parent}"
        return cmd

    def check_data(self, spec: DataSpec, data_args: tuple[str, ...] = ()) -> None:
        """Fail before training when the data or the encoder checkpoint do not fit (one line).

        ``data_args``: the command-line settings that select this data (e.g. ``data.root=PATH``), repeated
        in the command that makes a missing encoder."""
        self.data_args = data_args
        n = torch.Size(spec.shape).numel()
        if self.cfg.collapse_to is not None and len(self.cfg.collapse_to) != n:
            raise ValueError(f"method.collapse_to must have {n} values for data '{spec.name}', "
                             f"got {self.cfg.collapse_to}")
        if self.cond_step is not None:
            self.cond_step.check_data(spec, self.make_encoder_command(spec))

    def build(self, backbone: nn.Module, spec: DataSpec) -> nn.Module:
        self.spec = spec
        if self.cfg.collapse_to is not None:
            collapse(backbone, self.noise_shape(spec), self.cfg.collapse_to, self.cfg.collapse_steps)
        if self.cond_step is not None:
            self.cond_step.bind(spec, how_to_make=self.make_encoder_command(spec),
                                style_shape=getattr(backbone, "style_shape", None))
        return backbone

    def resolved_config(self) -> dict:
        """Config values known only after build (the encoder's hash), for the run record."""
        return self.cond_step.resolved_config() if self.cond_step is not None else {}

    def check_batch(self, local_batch: int, world: int = 1) -> None:
        if self.cond_step is not None:
            return self.cond_step.check_batch(local_batch, world)
        check_groups(self.cfg.group_size, local_batch, world)

    # -- training -------------------------------------------------------------------------------------
    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if self.cond_step is not None:
            return self.cond_step.loss(net, batch, self.noise_shape(self.spec))
        pos = batch.x.flatten(1).float()
        b, d = pos.shape
        world = batch.random.global_batch // b
        self.check_batch(b, world)
        g = self.cfg.group_size or b * world
        noise = batch.random.randn(*self.noise_shape(self.spec))
        gen = net(noise).flatten(1).float()
        spread = spans_ranks(self.cfg.group_size, b, world)
        if spread:
            gen, pos = global_batch(gen, pos, batch.random.rows)
        gen, pos = gen.view(-1, g, d), pos.view(-1, g, d)
        if self.cfg.loss in ("alg2", "mmd"):
            with torch.no_grad():
                v = (drifting_field(gen.detach(), pos, gen.detach(), self.cfg.temperature,
                                    kernel_norm=self.cfg.kernel_norm) if self.cfg.loss == "alg2"
                     else mmd_field(gen.detach(), pos, self.cfg.bandwidth))
            loss, diag = drift_mse(gen, v), {"drift_sq": v.pow(2).sum(-1).mean()}
        else:
            reduce = None if spread else all_reduce_fn(self.cfg.sync_scales)   # gathered: already global
            loss, info = drift_loss(gen, pos, temperatures=tuple(self.cfg.temperatures), opts=self.opts,
                                    all_reduce=reduce)
            loss, diag = loss.mean(), info_scalars(info)
        return (global_mean(loss, world) if spread else loss), diag

    # -- sampling -------------------------------------------------------------------------------------
    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        self.check_nfe(nfe, guidance)
        device = next(net.parameters()).device
        noise = per_image_noise(noise_seeds, self.noise_shape(self.spec), device)
        if self.cond_step is None:
            return net(noise)
        if y is None:
            raise ValueError("a class-conditional drifting model needs labels to sample")
        cond = {"y": y.to(device)}
        if self.cfg.cfg:
            cond["alpha"] = torch.full((len(y),), float(guidance), device=device)
        if self.cond_step.style_shape is not None:
            cond["style"] = style_indices(noise_seeds, *self.cond_step.style_shape, device)
        return net(noise, cond)

    def default_nfe(self) -> list[int]:
        return [1]

    def check_nfe(self, nfe: int, guidance: float) -> None:
        if nfe != 1:
            raise NFEError(f"drifting generates in one network evaluation: eval.nfe must be [1], got {nfe}")
        if self.cfg.conditional and self.cfg.cfg:
            if guidance < 1.0:
                raise NFEError(f"drifting's guidance is the CFG scale alpha >= 1 (1 = none), got {guidance}")
        elif guidance != 1.0:
            raise NFEError(f"this drifting model has no guidance input (method.conditional and method.cfg): "
                           f"eval.guidance must be [1.0], got {guidance}")

    def feature_modules(self) -> list[nn.Module]:
        """The frozen feature encoder the loss runs (compiled and made channels-last by the harness)."""
        enc = self.cond_step.encoder if self.cond_step is not None else None
        return [enc] if enc is not None else []

    def preflight(self) -> list[tuple[str, bool, str]]:
        """``bench.doctor``'s line about the frozen feature encoder (checked and hashed by ``check_data``)."""
        header = self.cond_step.encoder_header if self.cond_step is not None else None
        if header is None:
            return []
        return [("encoder", True, f"{self.cfg.encoder_path} (sha256 {header['sha256'][:16]}...)")]

    def invariance_note(self, world: int) -> str | None:
        """Why this run on ``world`` processes differs from one process (None: it does not)."""
        return self.cond_step.invariance_note(world) if self.cond_step is not None else None

    def state_per_process(self, world: int) -> bool:
        return self.cond_step is not None and self.cond_step.state_per_process(world)

    def state_dict(self) -> dict:
        return self.cond_step.state_dict() if self.cond_step is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.cond_step is not None:
            self.cond_step.load_state_dict(state)


def collapse(net: nn.Module, noise_shape: tuple[int, ...], point: list[float],
             steps: int, batch: int = 256) -> None:
    """Fit the generator to output ``point`` for every noise (MSE, Adam 1e-3): the collapsed initialisation of
    the paper's Fig. 3 (bottom). Uses the torch RNG, seeded by the run before the network is built."""
    target = torch.tensor(point, dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = (net(torch.randn(batch, *noise_shape)).flatten(1) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def style_indices(seeds: Tensor, n: int, codebook: int, device="cpu") -> Tensor:
    """Per-image random style indices ``[N, n]`` (sample i depends only on seed i; no loop over images)."""
    return keyed_randint((0x57E1E,), seeds, codebook, (n,), device)


def all_reduce_fn(enabled: bool):
    """A sum over processes for S and lambda (None in single-process runs or when disabled)."""
    import torch.distributed as dist
    if not (enabled and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None

    def reduce(t: Tensor) -> Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t
    return reduce


def info_scalars(info: dict[str, Tensor], keys: list[str] | None = None) -> dict[str, Tensor]:
    """Diagnostics as detached 0-d tensors left on the device: the harness reads them every
    ``train.log_every`` steps (``methods.harness.device_log``), so a step never waits for them."""
    keys = list(info) if keys is None else keys
    return {k: info[k].detach().float().reshape(()) for k in keys}

"""One class-conditional drifting training step (PAPER.md sections 1.5, 2.7, 3; Deng et al. 2026, A.7-A.9).

Per step (the release's ``train_gen`` / ``train_step``), with ``classes_per_step`` = N_c the *global*
number of classes, split evenly over the processes (each generates whole classes: groups g0 .. g0 + N_c/W):
1. Push the freshly loaded real samples into the per-class queues and the global unconditional queue
   (``train.batch_size`` is therefore the release's global ``push_per_step``).
2. Pick N_c labels: the labels of a random subset of the batch rows (class frequencies follow the data;
   a label may repeat, as in the release).
3. Draw one alpha per label (``guidance.alpha_from_uniforms``) and the CFG weight
   ``w = (alpha - 1)(N_neg - 1) / N_unc`` of that label's unconditional negatives.
4. Generate ``gen_per_class`` samples per label from f(eps, c, alpha[, style]).
5. Draw ``pos_per_class`` positives from the label's queue and ``unc_per_class`` unconditional samples from
   the global queue (without replacement where possible).
6. Feature vectors of generated samples (with gradients) and of the real samples (without), one drifting
   loss per feature key over all (class, location) groups, keys summed (``features.py``); with
   ``method.convnext`` the ConvNeXt-V2 vectors too (``convnext.py``, the pixel recipes).

Randomness: every draw is keyed (``methods.noise``) by (seed, step, what, global index): the subset of
rows by global row, alpha and the queue draws by global group, noise and style indices by global
generated sample. S and lambda are all-reduced over processes (``sync_scales``), so they are batch-wide
as in the release's jitted step.

Queues (``queue_fill``): ``global`` (default): every process pushes the whole global batch (one all-gather
of the step's real samples), so every process holds exactly the queues one process would, and 1 and N
processes train the same loss on the same global batch; all processes' queues are equal and a checkpoint
keeps one copy. ``local``: the release's per-host queues: each process pushes only its own shard and draws
its labels from it; its queues are its own (the checkpoint keeps every process's, by rank) and the run is
not world-size invariant, which its record says (``invariance_note``). Both are faithful in distribution
(a class queue holds recent i.i.d. samples of its class); ``global`` refreshes the queues W times faster
and costs an all-gather of the batch per step (at ImageNet latents, 4096 x 4 x 32 x 32 floats = 64 MB).
``cfg: false`` trains without unconditional negatives and without the alpha input.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import BackboneIO, Batch, DataSpec
from methods.drifting.features import feature_drift_loss, feature_vectors
from methods.drifting.guidance import alpha_from_uniforms, check_alpha_law, unconditional_weight
from methods.drifting.loss import DriftLossOptions
from methods.drifting.mae import load_encoder
from methods.drifting.queue import DEVICES as QUEUE_DEVICES, DTYPES as QUEUE_DTYPES, QueueStorage, SampleQueues
from methods.harness.dist import gather_rows
from methods.noise import keyed_rand, keyed_randint, keyed_randn, keyed_rows

QUEUE_FILLS = ("global", "local")
STREAM = 0xC07D                    # keyed streams of a conditional step: (seed, step, STREAM, what)
LABELS, ALPHA, POSITIVES, NEGATIVES, STYLE, NOISE = range(6)


class ConditionalStep:
    def __init__(self, cfg, opts: DriftLossOptions):
        self.cfg, self.opts = cfg, opts
        checks = [
            (cfg.classes_per_step >= 1, f"method.classes_per_step must be >= 1, got {cfg.classes_per_step}"),
            (cfg.gen_per_class >= 2, f"method.gen_per_class must be >= 2 (a sample is not its own negative), "
                                     f"got {cfg.gen_per_class}"),
            (cfg.pos_per_class >= 1, f"method.pos_per_class must be >= 1, got {cfg.pos_per_class}"),
            (cfg.unc_per_class >= 0, f"method.unc_per_class must be >= 0, got {cfg.unc_per_class}"),
            (cfg.class_queue >= 1 and cfg.global_queue >= 1, "method.class_queue and method.global_queue must be >= 1"),
            (cfg.queue_fill in QUEUE_FILLS, f"method.queue_fill must be one of {list(QUEUE_FILLS)}, got '{cfg.queue_fill}'"),
            (cfg.queue_device in QUEUE_DEVICES, f"method.queue_device must be one of {list(QUEUE_DEVICES)}, got "
                                                f"'{cfg.queue_device}'"),
            (cfg.queue_dtype in QUEUE_DTYPES, f"method.queue_dtype must be one of {list(QUEUE_DTYPES)}, got "
                                              f"'{cfg.queue_dtype}'"),
            (cfg.encoder_path is not None or cfg.raw_loss,
             "method.raw_loss=false needs a feature encoder: set method.encoder_path"),
            (all(s >= 2 for s in cfg.patch_sizes), f"method.patch_sizes must be >= 2, got {cfg.patch_sizes}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if cfg.cfg:
            check_alpha_law(cfg.alpha_min, cfg.alpha_max, cfg.alpha_exponent, cfg.no_cfg_frac)
        self.encoder: nn.Module | None = None
        self.encoder_header: dict | None = None
        self.convnext: nn.Module | None = None
        self.queues: SampleQueues | None = None
        self._pending_state: dict | None = None
        self.style_shape: tuple[int, int] | None = None
        self.wants_style = False

    def backbone_io(self, spec: DataSpec, noise_shape: tuple[int, ...], style: bool) -> BackboneIO:
        self.wants_style = style
        cond = ("y",) + (("alpha",) if self.cfg.cfg else ()) + (("style",) if style else ())
        return BackboneIO(in_shape=noise_shape, out_shape=spec.shape, cond=cond, num_classes=spec.num_classes)

    def check_data(self, spec: DataSpec, how_to_make: str) -> None:
        """Fail before training: labels present, encoder checkpoint present, matching and as expected."""
        if spec.num_classes < 1:
            raise ValueError(f"method.conditional=true needs labelled data; '{spec.name}' has no classes")
        if self.cfg.queue_dtype == "uint8" and (spec.kind != "images" or spec.decoded_shape is not None
                                                 or spec.value_range != (-1.0, 1.0)):
            raise ValueError(f"method.queue_dtype=uint8 stores uint8 pixels mapped to [-1, 1]; data '{spec.name}' "
                             f"is not such images: use float16 or float32")
        if self.cfg.convnext is not None and self.convnext is None:
            from methods.drifting.convnext import load_convnext
            if tuple(spec.shape[:1]) != (3,) or spec.decoded_shape is not None:
                raise ValueError(f"method.convnext takes RGB images; data '{spec.name}' has shape {list(spec.shape)}")
            self.convnext = load_convnext(self.cfg.convnext)
        if self.cfg.encoder_path is None or self.encoder is not None:
            return
        enc, header = load_encoder(self.cfg.encoder_path, self.cfg.encoder_sha256, how_to_make)
        if len(spec.shape) != 3 or spec.shape[0] != header["in_channels"]:
            raise ValueError(f"encoder {self.cfg.encoder_path} takes {header['in_channels']}-channel images, data "
                             f"'{spec.name}' has shape {list(spec.shape)}")
        self.encoder, self.encoder_header = enc, header

    def resolved_config(self) -> dict:
        out = {} if self.encoder_header is None else {"encoder_sha256": self.encoder_header["sha256"]}
        if self.convnext is not None:
            out["convnext_sha256"] = self.convnext.sha256
        return out

    def bind(self, spec: DataSpec, how_to_make: str, style_shape: tuple[int, int] | None = None) -> None:
        """Attach to the data and the built backbone (``style_shape``: (tokens, codebook) of its style input)."""
        self.check_data(spec, how_to_make)
        if self.wants_style and style_shape is None:
            raise ValueError("the generator was asked for style indices but exposes no style_shape")
        self.style_shape = tuple(style_shape) if self.wants_style else None
        self.num_classes = spec.num_classes
        self.queues = SampleQueues(spec.num_classes, self.cfg.class_queue, self.cfg.global_queue,
                                   QueueStorage(self.cfg.queue_device, self.cfg.queue_dtype))
        if self._pending_state is not None:
            self.queues.load_state_dict(self._pending_state)

    def check_batch(self, local_batch: int, world: int = 1) -> None:
        nc, total = self.cfg.classes_per_step, local_batch * world
        if nc % world:
            raise ValueError(f"method.classes_per_step={nc} (global) must be divisible by the {world} processes, "
                             f"each generating whole classes")
        if nc > total:
            raise ValueError(f"method.classes_per_step={nc} labels are drawn from the {total} samples loaded per "
                             f"step; raise train.batch_size")

    def invariance_note(self, world: int) -> str | None:
        """Why a run on ``world`` processes trains differently from one process, or None."""
        if world > 1 and self.cfg.queue_fill == "local":
            return (f"method.queue_fill=local: each of the {world} processes fills its own queues from its data "
                    f"shard (the release's per-host queues), so its positives and labels differ from one process's")
        return None

    def state_per_process(self, world: int) -> bool:
        """Whether every process holds different state (its own queues) that a checkpoint must keep."""
        return world > 1 and self.cfg.queue_fill == "local"

    def _fill_and_label(self, x: Tensor, y: Tensor, rnd, world: int) -> Tensor:
        """Push the step's real samples and return the labels of this rank's groups (steps 1 and 2)."""
        rank, per = rnd.rows.start // len(x), self.cfg.classes_per_step // world
        key = (rnd.seed, rnd.step, STREAM, LABELS)
        if self.cfg.queue_fill == "global":       # every rank pushes the global batch: one process's queues
            xs, ys = gather_rows(x), gather_rows(y)
            self.queues.push(xs, ys)
            chosen = keyed_rand(key, range(len(ys)), (), ys.device).argsort()[rank * per:(rank + 1) * per]
            return ys[chosen]
        self.queues.push(x.detach(), y)           # the release: each rank its own shard, labels from it
        return y[keyed_rand(key, rnd.rows, (), y.device).argsort()[:per]]

    def loss(self, net: nn.Module, batch: Batch, noise_shape: tuple[int, ...]) -> tuple[Tensor, dict[str, float]]:
        from methods.drifting.method import all_reduce_fn, info_scalars
        c, rnd = self.cfg, batch.random
        x, dev = batch.x, batch.x.device
        world = rnd.global_batch // len(x)
        self.check_batch(len(x), world)
        labels = self._fill_and_label(x, batch.y, rnd, world)
        nc, ng = len(labels), c.gen_per_class
        g0 = rnd.rows.start // len(x) * nc                         # this rank's first group, globally
        groups, samples = range(g0, g0 + nc), range(g0 * ng, (g0 + nc) * ng)
        key = lambda stream: (rnd.seed, rnd.step, STREAM, stream)  # noqa: E731
        nu = c.unc_per_class if c.cfg else 0
        if c.cfg:
            u = keyed_rows(key(ALPHA), groups, lambda g, n: torch.rand(n, 2, generator=g, device=g.device,
                                                                       dtype=torch.float64), "cpu")
            alpha = alpha_from_uniforms(u[:, 0], u[:, 1], c.alpha_min, c.alpha_max, c.alpha_exponent, c.no_cfg_frac)
        else:
            alpha = torch.ones(nc)
        pos = self.queues.positives(labels, c.pos_per_class, keyed=(key(POSITIVES), groups))
        unc = self.queues.negatives(nc, nu, keyed=(key(NEGATIVES), groups)) if nu else None
        cond = {"y": labels.repeat_interleave(ng)}
        if c.cfg:
            cond["alpha"] = alpha.to(dev).repeat_interleave(ng)
        if self.style_shape is not None:
            n_style, codebook = self.style_shape
            cond["style"] = keyed_randint(key(STYLE), samples, codebook, (n_style,), dev)
        noise = keyed_randn(key(NOISE), samples, noise_shape, dev)
        gen = net(noise, cond)

        enc = self.encoder.to(dev) if self.encoder is not None else None
        patch = tuple(c.patch_sizes)
        cnx = self.convnext.to(dev) if self.convnext is not None else None
        f_gen = feature_vectors(enc, gen, patch, raw=c.raw_loss, convnext=cnx)
        real = pos.flatten(0, 1) if unc is None else torch.cat([pos.flatten(0, 1), unc.flatten(0, 1)])
        with torch.no_grad():
            f_real = feature_vectors(enc, real, patch, raw=c.raw_loss, convnext=cnx)
        n_pos = nc * c.pos_per_class
        f_pos = {k: v[:n_pos] for k, v in f_real.items()}
        f_unc = {k: v[n_pos:] for k, v in f_real.items()} if unc is not None else None
        w_unc = unconditional_weight(alpha, ng, nu).to(dev) if unc is not None else None
        loss, info = feature_drift_loss(f_gen, f_pos, f_unc, nc, w_unc, tuple(c.temperatures), self.opts,
                                        all_reduce_fn(c.sync_scales))
        keys = [k for k in info if c.log_keys or k.count("/") <= 1 and not k.startswith("scale/")]
        if "scale/global" in info:
            keys.append("scale/global")
        diag = info_scalars(info, keys)
        diag["alpha_mean"] = float(alpha.mean())
        return loss, diag

    def state_dict(self) -> dict:
        return {"queues": self.queues.state_dict()} if self.queues is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if self.queues is None:
            self._pending_state = state["queues"]
        else:
            self.queues.load_state_dict(state["queues"])

"""Validation of the evaluation protocol's settings before anything runs (``bench.config.prepare_train``):
every refused value is one line that says what to fix."""
from __future__ import annotations

from pathlib import Path

from bench.evaluation import clip, sweep
from bench.evaluation.labels import eval_labels
from bench.metrics.fidelity import QUANTIZE

ADM_REFERENCES = {64: "VIRTUAL_imagenet64_labeled.npz", 128: "VIRTUAL_imagenet128_labeled.npz",
                  256: "VIRTUAL_imagenet256_labeled.npz"}   # guided-diffusion's evaluation suite


def image_shape(data) -> tuple[int, ...]:
    """The shape of one sample as the metrics see it: decoded images where the source decodes latents."""
    return tuple(data.spec.decoded_shape or data.spec.shape)


def checkpoint_choice(value: str) -> str | int:
    """``last``, ``all`` or the number of newest kept checkpoints."""
    if value in ("last", "all"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"eval.checkpoints: '{value}'; choose last, all or a number K >= 1 (the K newest kept)")


def _check_reference_size(ev, data) -> None:
    from bench.metrics.inception import npz_shape

    if not ev.reference or not Path(ev.reference).expanduser().is_file():
        return                               # a missing file is refused by the metrics' own check
    shape = npz_shape(str(Path(ev.reference).expanduser()), "arr_0")
    size = image_shape(data)[-2:]
    if shape is not None and len(shape) == 4 and tuple(shape[1:3]) != size:
        known = ADM_REFERENCES.get(size[0], f"a reference batch of {size[0]}x{size[1]} images")
        raise ValueError(f"eval.reference={ev.reference} holds {shape[1]}x{shape[2]} images but the samples are "
                         f"{size[0]}x{size[1]}: use {known}")


def check_protocol(ev, method, data, metrics: list[str], world: int) -> None:
    scales = sweep.scales_of(ev.guidance, ev.guidance_grid)
    if ev.search not in sweep.SEARCHES:
        raise ValueError(f"eval.search: '{ev.search}'; choose one of: {', '.join(sweep.SEARCHES)}")
    metric = sweep.search_metric(ev.search_metric, metrics) if len(scales) > 1 or ev.search_metric else None
    if ev.search == "coarse_to_fine":
        if len(scales) < 2:
            raise ValueError("eval.search=coarse_to_fine needs several guidance scales (eval.guidance or "
                             "eval.guidance_grid)")
        if metric is None:
            raise ValueError(f"eval.search=coarse_to_fine needs a metric to rank scales: set eval.search_metric "
                             f"to one of {', '.join(sweep.LOWER_IS_BETTER)} that eval.metrics measures")
        if not world <= ev.search_samples < ev.num_samples:
            raise ValueError(f"eval.search_samples={ev.search_samples} must lie in [{world}, eval.num_samples="
                             f"{ev.num_samples}) (the coarse stage uses fewer samples)")
    if ev.num_samples < world:
        raise ValueError(f"eval.num_samples={ev.num_samples} is fewer than the {world} processes")
    if ev.quantize not in QUANTIZE:
        raise ValueError(f"eval.quantize: '{ev.quantize}'; choose one of: {', '.join(QUANTIZE)}")
    if method.conditional:
        eval_labels(ev.labels, max(ev.num_samples, ev.search_samples), data.spec.num_classes)
    elif ev.labels != "balanced":
        raise ValueError(f"eval.labels={ev.labels}: this model is unconditional (it samples without labels)")
    checkpoint_choice(str(ev.checkpoints))
    is_images = data.spec.kind == "images"
    if ev.adm_samples and not is_images:
        raise ValueError("eval.adm_samples=true needs image data (the ADM evaluator reads images)")
    if "fid" in metrics and data.spec.name.startswith("imagenet") and not ev.reference:
        raise ValueError(f"FID on ImageNet compares with the ADM reference batch: set eval.reference=PATH to "
                         f"{ADM_REFERENCES.get(image_shape(data)[-1], ADM_REFERENCES[256])} (guided-diffusion's "
                         f"evaluation suite)")
    _check_reference_size(ev, data)
    if ev.memorisation:
        if ev.memorisation < 0 or ev.memorisation_k < 1:
            raise ValueError("eval.memorisation must be >= 0 and eval.memorisation_k >= 1")
        if not is_images:
            raise ValueError("eval.memorisation needs image data")
        if ev.memorisation > ev.num_samples // world:
            raise ValueError(f"eval.memorisation={ev.memorisation} exceeds the samples of one process "
                             f"({ev.num_samples // world})")
        clip.check(ev.memorisation_features)
        if clip.source(ev.memorisation_features) is None:
            from bench.metrics.inception import resolve_weights

            resolve_weights(ev.metric_options())

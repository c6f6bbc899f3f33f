"""Metrics in the domain classifier (``bench.metrics.domain``): distances in its features, and what its
predictions say about the samples.

- ``fd_domain``, ``kid_domain``, ``precision_domain`` ... ``coverage_domain``: ``bench.metrics.features``
  in the classifier's penultimate features (FD-domain, never called FID).
- ``class_acc``: the fraction of conditional samples the classifier assigns to the class they were
  generated for (unconditional samples have no label: no value, with that reason in the record).
- ``classes_covered``: how many classes the classifier finds among the samples (of num_classes).
- ``stacked_modes``, ``stacked_kl`` (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): each channel
  of a stacked-digits sample is classified; modes = distinct (d1, d2, d3) triples found (of 1,000);
  KL(generated triple distribution || data triple distribution), the data distribution being the product
  of the training split's digit frequencies (the stacked training set draws channels independently).
  The classifier's held-out accuracy is in every source entry.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bench.metrics.domain import DomainExtractor, no_classifier
from bench.metrics.features import register_feature_metrics
from bench.metrics.registry import Features, MetricFamily, NotApplicable, register_extractor, register_family


def predictions(f: Features, data) -> Tensor:
    """Predicted labels of the generated samples, in the data's label convention."""
    logits = f.gen_layers["logits"]
    if data.spec.name == "stacked_digits":
        d = logits.reshape(len(logits), 3, -1).argmax(-1)
        return d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    return logits.argmax(-1)


def class_accuracy(f: Features, data, opts) -> dict:
    if f.gen_labels is None:
        raise NotApplicable("the samples are unconditional (the method does not use labels): "
                            "there is no class to check them against")
    return {"class_acc": (predictions(f, data) == f.gen_labels).double().mean().item()}


def classes_covered(f: Features, data, opts) -> dict:
    return {"classes_covered": float(predictions(f, data).unique().numel()),
            "details": {"num_classes": data.spec.num_classes}}


def digit_frequencies() -> Tensor:
    from bench.data.digits import digits_arrays

    y = digits_arrays()[1]
    return torch.bincount(y, minlength=10).double() / len(y)


def stacked_modes(f: Features, data, opts) -> dict:
    pred = predictions(f, data)
    q = torch.bincount(pred, minlength=1000).double() / len(pred)
    p1 = digit_frequencies()
    p = (p1[:, None, None] * p1[None, :, None] * p1[None, None, :]).reshape(-1)
    nz = q > 0
    kl = (q[nz] * (q[nz] / p[nz]).log()).sum().item()
    return {"stacked_modes": float(nz.sum()), "stacked_kl": kl, "details": {"num_modes": 1000}}


def _domain(data, opts) -> str | None:
    return no_classifier(data)


def _has_classifier(data) -> bool:
    return no_classifier(data) is None


def _stacked(data, opts) -> str | None:
    return None if data.spec.name == "stacked_digits" else "stacked-digits modes need data=stacked_digits"


def _single(data, opts) -> str | None:
    return _domain(data, opts) or (None if data.spec.name != "stacked_digits"
                                   else "on stacked digits use stacked_modes (1,000 digit triples)")


register_extractor("domain", lambda data, options: DomainExtractor(data, options))
register_feature_metrics("domain", fd="fd_domain", kid_name="kid_domain", suffix="_domain", unavailable=_domain,
                         default=_has_classifier)
register_family(MetricFamily(names=("class_acc",), extractor="domain", compute=class_accuracy,
                             unavailable=_domain, default=_has_classifier))
register_family(MetricFamily(names=("classes_covered",), extractor="domain", compute=classes_covered,
                             unavailable=_single, default=lambda data: _single(data, None) is None))
register_family(MetricFamily(names=("stacked_modes", "stacked_kl"), extractor="domain", compute=stacked_modes,
                             unavailable=_stacked, default=lambda data: data.spec.name == "stacked_digits"))

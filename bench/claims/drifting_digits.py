"""Claim (e): feature-space drifting beats raw-pixel drifting on 8x8 digits (PAPER.md 2.1, 10.3, 12.10).

``python -m bench.claims.drifting_digits [--seeds 0 1 2] [--jobs 2]`` is ``python -m
bench.claims.drifting_toys e ...``: the variants (``features``: the digits preset's multi-scale encoder
features plus the raw output; ``raw``: ``method.encoder_path=null``) are the claims suite's group (e), after
the tiny MAE encoder is pre-trained (the suite's prepare job). The claim holds when features give the lower
``fd_domain`` (Frechet distance in the suite's digits classifier; not FID) both at alpha = 1 and at the best
guidance, averaged over seeds.
"""
from __future__ import annotations

import sys

from bench.claims import drifting_toys


def main(argv=None) -> None:
    drifting_toys.main(["e", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()

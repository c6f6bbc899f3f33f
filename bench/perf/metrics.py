"""Speed and memory of the metrics (issue 5's targets; a benchmark, not a test).

    python -m bench.perf.metrics toy                 # every toy metric on 10K samples (target: < 5 s on CPU)
    python -m bench.perf.metrics prdc --n 50000      # precision/recall/density/coverage memory at 50K
    python -m bench.perf.metrics fid --n 100         # our FID vs a bare torch-fidelity call (target: <= 1.10)
    python -m bench.perf.metrics cache --n 50 --n-ref 500   # second evaluation with cached reference (>= 5x)
    python -m bench.perf.metrics w2 --n 10000 --dense-max 2500   # exact W2: sparse certified vs dense solver

``fid`` and ``cache`` use the Inception weights that ``eval.inception_weights=auto`` resolves (the
fid-helper conversion offline); ``--extractor domain`` runs them on the digits classifier instead.
Wall-clock and process CPU time are both printed: on a shared machine wall time mostly measures the load.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch
from torch.utils.data import Dataset

from bench.data import build_data
from bench.data.tensor_source import TensorSource
from bench.metrics import MetricOptions, default_metrics, evaluate
from bench.metrics.fidelity import to_uint8_rgb


def clock(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def toy(args) -> None:
    data = build_data({"name": args.data, "n_train": 10})
    x = data.floor(args.n)[0] + 0.01 * torch.randn(args.n, 2, generator=torch.Generator().manual_seed(0))
    names = [m for m in default_metrics(data) if not m.startswith("w2")]
    evaluate(names, x[:100], None, data, 100)            # imports and first-call costs, not measured
    r, wall, cpu = clock(lambda: evaluate(names, x, None, data, args.n))
    print(f"toy {args.data}, n={args.n}: {len(names)} metrics ({', '.join(names)}) in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU (target < 5 s)")
    for n in args.w2_n:
        _, wall, cpu = clock(lambda: evaluate(["w2", "w2_floor"], x[:n], None, data, n))
        print(f"toy {args.data}: w2 + w2_floor (exact assignment, certified) at n={n}: {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU")


def w2(args) -> None:
    """Exact W2 on data-vs-data and bad-generator pairs: the sparse certified solver, and scipy's dense
    assignment (same value required) where n <= --dense-max."""
    from bench.metrics.distances import w2_dense, w2_sparse

    g = torch.Generator().manual_seed(0)
    grid, ring = build_data({"name": "grid25", "n_train": 10}), build_data({"name": "ring8", "n_train": 10})
    one_mode = grid.modes.means[:1] + grid.modes.std * torch.randn(args.n, 2, generator=g)
    cases = {"grid25 vs grid25": (grid.floor(args.n)[0], grid.reference(args.n)[0]),
             "ring8 vs ring8": (ring.floor(args.n)[0], ring.reference(args.n)[0]),
             "one grid25 mode vs grid25": (one_mode, grid.reference(args.n)[0]),
             "uniform square vs gaussian blob": (2 * torch.rand(args.n, 2, generator=g) - 1,
                                                 0.3 * torch.randn(args.n, 2, generator=g))}
    for name, (x, y) in cases.items():
        a, b = x.double().numpy(), y.double().numpy()
        w, wall, cpu = clock(lambda: w2_sparse(a, b))
        line = f"w2 {name}, n={args.n}: sparse certified {w:.10f} in {wall:.2f} s wall, {cpu:.2f} s CPU"
        if args.n <= args.dense_max:
            wd, wall, cpu = clock(lambda: w2_dense(a, b))
            line += (f"; dense {wd:.10f} in {wall:.2f} s wall, {cpu:.2f} s CPU "
                     f"(relative difference {abs(w - wd) / wd:.1e})")
        print(line, flush=True)


def prdc(args) -> None:
    from bench.metrics.prdc import density_coverage, precision_recall

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(args.n, args.dim, generator=g), torch.randn(args.n, args.dim, generator=g) + 0.1
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out, wall, cpu = clock(lambda: {**precision_recall(fake, real, batch=args.batch),
                                    **density_coverage(fake, real, batch=args.batch)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full = args.n * args.n * 4 / 2 ** 20
    print(f"prdc n={args.n} d={args.dim} batch={args.batch}: {out}; {wall:.1f} s wall, {cpu:.1f} s CPU; peak RSS "
          f"{peak:.0f} MiB ({base:.0f} MiB before; one full {args.n}x{args.n} distance matrix would be {full:.0f} MiB)")


class Uint8Images(Dataset):
    def __init__(self, x, value_range):
        self.x = to_uint8_rgb(x, value_range)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def _setup(args):
    digits = build_data({"name": "digits"})
    ref_x, ref_y = digits.reference(0)
    gen = ref_x[torch.randperm(len(ref_x), generator=torch.Generator().manual_seed(1))[:args.n]]
    gen = (gen + 0.2 * torch.randn(gen.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    data = TensorSource(digits.spec, (ref_x, ref_y), reference_fn=lambda n: (ref_x[:args.n_ref], ref_y[:args.n_ref]),
                        classifier=digits.classifier)
    metric = "fid" if args.extractor == "inception" else "fd_domain"
    return data, gen, metric


def fid(args) -> None:
    import torch_fidelity

    from bench.metrics.domain import FIDELITY_NAME, classifier_file
    from bench.metrics.inception import resolve_weights

    args.n_ref = args.n
    data, gen, metric = _setup(args)
    with tempfile.TemporaryDirectory() as cache:
        opts = MetricOptions(cache_dir=cache, feature_batch_size=args.batch)
        if args.extractor == "inception":
            kw = {"feature_extractor_weights_path": resolve_weights(opts).path}
        else:
            kw = {"feature_extractor": FIDELITY_NAME,
                  "feature_extractor_weights_path": str(classifier_file(data, opts.cache_root()))}
        inputs = (Uint8Images(gen, data.spec.value_range), Uint8Images(data.reference(0)[0], data.spec.value_range))
        times = {"ours": [], "bare": []}
        for _ in range(args.repeats):    # interleaved, cold reference cache each time
            with tempfile.TemporaryDirectory() as c:
                o = MetricOptions(cache_dir=c, feature_batch_size=args.batch, inception_weights=opts.inception_weights)
                if args.extractor == "domain":
                    classifier_file(data, o.cache_root())
                ours, w, _ = clock(lambda: evaluate([metric], gen, None, data, args.n, o).values[metric])
            times["ours"].append(w)
            bare, w, _ = clock(lambda: torch_fidelity.calculate_metrics(
                input1=inputs[0], input2=inputs[1], fid=True, cuda=False, cache=False, verbose=False,
                batch_size=args.batch, **kw)["frechet_inception_distance"])
            times["bare"].append(w)
    o, b = min(times["ours"]), min(times["bare"])
    print(f"{metric} ({args.extractor}) on {args.n} vs {args.n} digits: ours {ours:.4f} in {o:.2f} s, bare "
          f"torch-fidelity {bare:.4f} in {b:.2f} s (best of {args.repeats}); ratio {o / b:.3f} (target <= 1.10)")


def cache(args) -> None:
    data, gen, metric = _setup(args)
    with tempfile.TemporaryDirectory() as c:
        o = MetricOptions(cache_dir=c, feature_batch_size=args.batch)
        if args.extractor == "domain":
            from bench.metrics.domain import classifier_file
            classifier_file(data, o.cache_root())
        else:
            from bench.metrics.inception import resolve_weights
            resolve_weights(o)
        first, w1, _ = clock(lambda: evaluate([metric], gen, None, data, args.n_ref, o).values[metric])
        second, w2, _ = clock(lambda: evaluate([metric], gen, None, data, args.n_ref, o).values[metric])
    assert first == second
    print(f"{metric} ({args.extractor}), {args.n} samples vs {args.n_ref} reference: first {w1:.2f} s, "
          f"second (cached reference statistics) {w2:.2f} s: {w1 / w2:.1f}x (target >= 5x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["toy", "prdc", "fid", "cache", "w2"])
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--n-ref", type=int, default=500)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--data", default="grid25")
    p.add_argument("--w2-n", type=int, nargs="*", default=[2500])
    p.add_argument("--extractor", choices=["inception", "domain"], default="inception")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dense-max", type=int, default=2500, help="w2: run the dense solver up to this n")
    args = p.parse_args()
    defaults = {"toy": (10_000, None), "prdc": (50_000, 1024), "fid": (100, 50), "cache": (50, 50),
                "w2": (10_000, None)}[args.what]
    args.n = args.n or defaults[0]
    args.batch = args.batch or defaults[1]
    {"toy": toy, "prdc": prdc, "fid": fid, "cache": cache, "w2": w2}[args.what](args)


if __name__ == "__main__":
    main()

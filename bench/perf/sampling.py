"""Sampling speed, measured the way run records measure it (``bench.sampling.generate``).

``python -m bench.perf.sampling toy [--n 2500] [--repeats 5]``: the CPU target of issue 12. The toy drifting
sampler at 1 NFE (the notebook's 3x256 MLP, 2,500 samples in one batch) with today's keyed per-image noise
(``methods.base.per_image_noise``, blocks of 64 seeds) against the **before** reference kept here only: the
previous per-image loop that built one ``torch.Generator`` per image. Both the noise alone and the whole
``generate()`` call are timed, both ways, in one run; the ratios are printed.

``python -m bench.perf.sampling recipe=NAME [key=value ...] [--tiny] [--nfe 1] [--batch 256] [--device cuda]
[--precision bf16] [--modes eager,compile,graphs,compile+graphs] [--decode] [--out PATH]``: the recipe's
generator (``bench.perf.synthetic``, random weights; ``--tiny`` at CPU size), batch-1 latency and throughput at the evaluation batch (median and range over repeats, warm-up excluded) for each sampler
mode, before decoding and, with ``--decode``, with an SD-VAE decoder of the real architecture (random
weights: the time does not depend on them) timed apart and in the total. JSON to ``--out``
(default ``results/perf/sampling-<name>-<method>-<device>.json``) for the report's cost table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.config import ConfigError
from bench.sampling import generate
from bench.sampling_fast import SamplingOptions
from methods.base import DataSpec

MODES = {"eager": (False, False), "compile": (True, False), "graphs": (False, True), "compile+graphs": (True, True)}


def per_image_loop(seeds: torch.Tensor, shape: tuple[int, ...], device, draws: int = 1) -> torch.Tensor:
    """BEFORE (reference only, not used by driftbench): one generator per image, as methods/base.py did."""
    out = torch.empty(len(seeds), draws, *shape)
    for i, s in enumerate(seeds.tolist()):
        out[i] = torch.randn(draws, *shape, generator=torch.Generator().manual_seed(int(s)))
    out = out.to(device)
    return out[:, 0] if draws == 1 else out


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def toy(n: int, repeats: int) -> dict:
    import methods.drifting.method as drifting_module
    from methods.backbones import build_backbone
    from methods.base import per_image_noise
    torch.manual_seed(0)
    method = drifting_module.Drifting(drifting_module.Drifting.Config())
    spec = DataSpec("ring8", (2,))
    net = method.build(build_backbone({"name": "mlp"}, method.backbone_io(spec)), spec).eval()
    seeds = torch.arange(1_000_000, 1_000_000 + n)
    noise = {"before": _median_seconds(lambda: per_image_loop(seeds, (32,), "cpu"), repeats),
             "now": _median_seconds(lambda: per_image_noise(seeds, (32,), "cpu"), repeats)}
    whole = {}
    for name, fn in (("now", per_image_noise), ("before", per_image_loop)):
        drifting_module.per_image_noise = fn            # the sampler's noise, swapped for this timing only
        try:
            timing = generate(method, net, n, 1_000_000, 1, 1.0, n, latency_repeats=0,
                              options=SamplingOptions(throughput_repeats=repeats)).timing
            whole[name] = 1.0 / timing["throughput_images_per_second"]["median"]
        finally:
            drifting_module.per_image_noise = per_image_noise
    return {"kind": "sampling_toy", "n": n, "batch": n, "threads": torch.get_num_threads(),
            "noise_ms_per_image": {k: 1e3 * v / n for k, v in noise.items()},
            "generate_ms_per_image": {k: 1e3 * v for k, v in whole.items()},
            "noise_ratio": noise["before"] / noise["now"], "generate_ratio": whole["before"] / whole["now"]}


def model(overrides: list[str], args) -> dict:
    from bench.perf import synthetic
    device = torch.device(args.device)
    setup = synthetic.build(overrides, device, tiny=args.tiny, features=False)
    net = setup.net.eval()
    spec = setup.data.spec
    decode = sd_vae_decoder(device, args.precision) if args.decode else None
    labels = torch.arange(args.n) % spec.num_classes
    out = {"kind": "sampling", "recipe": setup.recipe, "name": setup.name, "method": setup.method_name,
           "nfe": args.nfe, "batch": args.batch, "n": args.n, "device": str(device), "precision": args.precision,
           "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "modes": {}}
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise ConfigError(f"--modes: unknown '{mode}'; choose from {', '.join(MODES)}")
        compile_, graphs = MODES[mode]
        opts = SamplingOptions(precision=args.precision, compile=compile_, cuda_graphs=graphs,
                               throughput_repeats=args.repeats)
        t = generate(setup.method, net, args.n, 0, args.nfe, 1.0, args.batch, labels=labels,
                     latency_repeats=args.repeats, options=opts, decode=decode).timing
        out["modes"][mode] = {k: t[k] for k in ("throughput_images_per_second", "latency_batch1", "seconds_per_image",
                                                "latency_batch1_total_seconds", "decode_seconds",
                                                "total_seconds_per_image", "peak_memory_bytes")}
    return out


def sd_vae_decoder(device: torch.device, precision: str):
    """Stable Diffusion's VAE decoder architecture (diffusers ``AutoencoderKL``, random weights), decoding
    32x32x4 latents to 256x256x3 images in chunks of 32."""
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        block_out_channels=(128, 256, 512, 512), sample_size=256,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    vae = vae.to(device).eval().requires_grad_(False)

    def decode(z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return torch.cat([vae.decode(c / 0.18215).sample for c in z.split(32)])
    return decode


def show(r: dict) -> None:
    if r["kind"] == "sampling_toy":
        print(f"toy drifting sampler, 1 NFE, {r['n']} samples in one batch, {r['threads']} CPU threads")
        for part in ("noise", "generate"):
            v = r[f"{part}_ms_per_image"]
            print(f"  {part}: before (one generator per image) {v['before']:.5f} ms/image, now "
                  f"{v['now']:.5f} ms/image: {r[f'{part}_ratio']:.2f}x")
        return
    print(f"{r['name']} / {r['method']}: NFE {r['nfe']}, batch {r['batch']}, {r['device']} ({r['gpu_name']}), "
          f"{r['precision']}")
    for mode, t in r["modes"].items():
        thr, lat = t["throughput_images_per_second"], t["latency_batch1"] or {}
        dec = "" if t["decode_seconds"] is None else \
            (f"; decode {1e3 * t['decode_seconds'] / r['n']:.3f} ms/image, total {1e3 * t['total_seconds_per_image']:.3f} "
             f"ms/image, batch-1 latency with decode {1e3 * (t['latency_batch1_total_seconds'] or float('nan')):.2f} ms")
        print(f"  {mode:15s} throughput {thr['median']:,.0f}/s (min {thr['min']:,.0f}, max {thr['max']:,.0f}) | "
              f"batch-1 latency {1e3 * lat.get('median', float('nan')):.2f} ms (min {1e3 * lat.get('min', float('nan')):.2f}, "
              f"max {1e3 * lat.get('max', float('nan')):.2f}){dec}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf.sampling")
    ap.add_argument("what", nargs="?", default=None, help="'toy' for the CPU before/after ratio")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized generator and classes")
    ap.add_argument("--n", type=int, default=None, help="samples per mode (default: toy 2500, else 4 x batch)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--nfe", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16" if torch.cuda.is_available() else "fp32")
    ap.add_argument("--modes", default="eager")
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default=None)
    args, overrides = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.what == "toy":
            result = toy(args.n or 2500, args.repeats)
        else:
            if args.what is not None:
                overrides.insert(0, args.what)
            args.n = args.n or 4 * args.batch
            result = model(overrides, args)
    except (ConfigError, ValueError) as e:
        print(f"bench.perf.sampling: error: {e}", file=sys.stderr)
        return 2
    show(result)
    if args.out or result["kind"] == "sampling":
        out = Path(args.out or f"results/perf/sampling-{result['name']}-{result['method']}-{args.device.split(':')[0]}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

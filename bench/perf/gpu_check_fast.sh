#!/usr/bin/env bash
# Issue 12's device check in a few minutes: training-step anatomy and MFU (item 2) and sampling latency and
# throughput (item 3) for drift_b2 (recipe=drifting_ablation), drift_b16 (recipe=drifting_pixel_b16, its
# queues in host memory as uint8) and the matched baselines on the B/2 backbone (recipe=flow_latent_b2,
# diffusion_latent_b2), each built by bench.perf.synthetic as `bench.run recipe=NAME` composes it. Steps run
# in order of importance, each under its own timeout, and print as they go; JSON lands in $OUT/perf (read by
# `python -m bench.report results_dir=...`, cost table).
#   bash bench/perf/gpu_check_fast.sh                    # on an H100/H200 (bf16, compile on)
#   COMPILE=0 bash bench/perf/gpu_check_fast.sh          # eager only (no compile time, lower MFU)
#   DEVICE=cpu SMALL=1 BUDGET=1800 bash bench/perf/gpu_check_fast.sh   # the same steps at tiny size on a CPU
set -uo pipefail
DEVICE=${DEVICE:-cuda}; OUT=${OUT:-/tmp/gpu_check_fast}; PY=${PYTHON:-python3}; SMALL=${SMALL:-0}
COMPILE=${COMPILE:-1}; BUDGET=${BUDGET:-540}      # seconds for the whole check; later steps are skipped past it
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
P="$OUT/perf"; mkdir -p "$P"
T0=$(date +%s)
step() { local left=$(( BUDGET - ($(date +%s) - T0) )) t=$(( $2 * SCALE ))
         if [ "$left" -lt 30 ]; then echo "== $1: skipped, the ${BUDGET}s budget is spent"; return; fi
         [ "$t" -gt "$left" ] && t=$left
         echo "== $1"; local s=$(date +%s%N); timeout "$t" "${@:3}"; local rc=$?
         echo "== $1: rc $rc, $(( ($(date +%s%N) - s) / 1000000 )) ms"; }
C=""; [ "$COMPILE" = 1 ] || C="train.compile=false"
if [ "$SMALL" = 1 ]; then   # CPU: tiny shapes, one thread, fewer repeats, timeouts x4
  T="--tiny"; BATCH=16; PIX=16; ST="--steps 2 --warmup 1"
  SB=8; MODES="eager"; DEC=""; PREC="fp32"; C="train.compile=false"; REP=3; SCALE=4; export OMP_NUM_THREADS=1
else
  T=""; BATCH=256; PIX=128; ST="--steps 6 --warmup 2"
  SB=256; MODES="eager,graphs,compile+graphs"; DEC="--decode"; PREC="bf16"; REP=10; SCALE=1
fi
G="$PY -m bench.perf.gpu_step --device $DEVICE $ST $T"
S="$PY -m bench.perf.sampling --device $DEVICE --precision $PREC --repeats $REP $T"
B2=recipe=drifting_ablation; B16=recipe=drifting_pixel_b16; FLOW=recipe=flow_latent_b2; DIFF=recipe=diffusion_latent_b2

$PY - "$DEVICE" <<'PY'
import sys, torch
print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda")
if sys.argv[1].startswith("cuda"):   # does SDPA take the flash kernel for the DiT's bf16 q, k, v?
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from bench.perf import synthetic
    net = synthetic.build(["recipe=drifting_ablation"], torch.device("cuda"), features=False).net
    x = torch.randn(4, 4, 32, 32, device="cuda")
    cond = {"y": torch.zeros(4, dtype=torch.long, device="cuda"), "alpha": torch.ones(4, device="cuda"),
            "style": torch.zeros(4, 32, dtype=torch.long, device="cuda")}
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            net(x, cond)
        print("flash attention: usable on the DiT's bf16 fast path")
    except RuntimeError as e:
        print("flash attention: NOT usable:", str(e).splitlines()[0])
PY
# Item 2: one training step, drifting (generator + MAE features + loss) against flow on the same backbone/batch.
step "train step drifting B/2 (ablation recipe)" 240 $G $B2 --batch $BATCH $C --out "$P/gpu_step-b2-drifting.json"
step "train step flow B/2 (same backbone, batch)" 180 $G $FLOW --batch $BATCH $C --out "$P/gpu_step-b2-flow.json"
# Item 3: one-step sampling, batch-1 latency and throughput at the evaluation batch, VAE decode apart.
step "sampling drifting B/2" 180 $S $B2 --batch $SB --modes $MODES $DEC --out "$P/sampling-b2-drifting.json"
step "sampling flow B/2, 32 NFE" 90 $S $FLOW --nfe 32 --batch $SB --modes eager --out "$P/sampling-b2-flow.json"
step "train step drifting B/16 (pixel recipe)" 180 $G $B16 --batch $PIX $C --out "$P/gpu_step-b16-drifting.json"
step "sampling drifting B/16" 90 $S $B16 --batch $SB --modes ${MODES%%,compile*} --out "$P/sampling-b16-drifting.json"
step "train step diffusion B/2" 120 $G $DIFF --batch $BATCH $C --out "$P/gpu_step-b2-diffusion.json"
$PY - "$P" <<'PY'
import json, pathlib, sys
runs = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
d, f = runs.get("gpu_step-b2-drifting"), runs.get("gpu_step-b2-flow")
if d and f:
    print(f"drifting / flow step time on B/2 at batch {d['images_per_step']}: "
          f"{d['step_seconds']['median'] / f['step_seconds']['median']:.2f}x (target <= 2x); MFU flow "
          f"{f['mfu_table'] or 0:.1%}, drifting {d['mfu_table'] or 0:.1%} (target >= 40% for the generator step)")
s = runs.get("sampling-b2-drifting")
if s:
    for mode, t in s["modes"].items():
        total = t.get("latency_batch1_total_seconds")
        print(f"drift_b2 sampling {mode}: batch-1 {1e3 * t['latency_batch1']['median']:.2f} ms (target < 3"
              + (f"; {1e3 * total:.2f} ms with the VAE decode" if total else "") + "), "
              f"{t['throughput_images_per_second']['median']:,.0f} latents/s at {s['batch']} (target > 5,000)")
PY

#!/usr/bin/env bash
# One short device check of the whole pipeline (PAPER.md configs where they fit a few minutes).
#   bash bench/perf/gpu_check.sh            # on a CUDA machine (bf16 autocast, as a user would run it)
#   DEVICE=cpu SMALL=1 bash bench/perf/gpu_check.sh   # the same steps, tiny, to check the script on CPU
# Prints one "== step" header per step and what each step measures; records land in $OUT/results.
set -uo pipefail
DEVICE=${DEVICE:-cuda}; OUT=${OUT:-/tmp/gpu_check}; PY=${PYTHON:-python3}; SMALL=${SMALL:-0}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
R="results_dir=$OUT/results device=$DEVICE train.progress=false"
step() { echo "== $1"; local s=$(date +%s%N); timeout "$2" "${@:3}"; local rc=$?
         echo "== $1: rc $rc, $(( ($(date +%s%N) - s) / 1000000 )) ms"; }
if [ "$SMALL" = 1 ]; then TOY="train.steps=20 eval.num_samples=200 eval.batch_size=200 eval.latency_repeats=1"
    DIG="train.steps=5 eval.num_samples=100 eval.latency_repeats=1"; ENC="encoder.train.steps=5 encoder.cls_ft_steps=2"
    BATCH=4; DIT="model=dit_digits data=digits"
else TOY=""; DIG=""; ENC=""; BATCH=64; DIT="model=drift_b2"; fi

$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"
# 1. the README default benchmark (drifting, ring8, MLP) on the device, then its baselines at the same budget
step "default benchmark" 300 $PY -m bench.run $R $TOY
step "baselines on ring8" 420 $PY -m bench.run -m method=flow,diffusion,meanflow $R $TOY
# 2. digits: MAE encoder pretraining, then feature-space drifting with CFG on the DiT generator
step "encoder pretraining" 300 $PY -m bench.run task=pretrain_encoder data=digits $R $ENC
step "drifting on digits (DiT generator)" 420 $PY -m bench.run method=drifting data=digits model=dit_digits $R $DIG
# 3. throughput of the paper's generator (DiT-B/2 on 32x32x4 latents) and the drifting loss, batched vs loop
step "generator step" 300 $PY -m bench.perf.backbone_step $DIT --batch $BATCH --repeats 5 --device $DEVICE \
    $([ "$DEVICE" = cpu ] || echo --precision bf16)
step "drift loss" 300 $PY -m bench.perf.drift_loss --device $DEVICE --no-memory
step "drift loss at 16x16" 300 $PY -m bench.perf.drift_loss --device $DEVICE --image 16 --no-memory
$PY - "$OUT/results" <<'PY'
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1], "records").glob("*.json")):
    r = json.loads(p.read_text())
    t = r.get("train", {})
    print(p.stem, "| train s", t.get("wall_seconds"), "| img/s", t.get("images_per_second"))
    for e in r.get("evals", []):
        m = {k: round(v, 4) for k, v in e["metrics"].items() if isinstance(v, (int, float)) and not k.endswith("_floor")}
        print("   nfe", e["nfe"], "measured", e["nfe_measured"], "g", e["guidance"],
              "ms/img", round(1000 / e["timing"]["images_per_second"], 4), m)
PY

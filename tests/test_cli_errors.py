"""Bad input fails fast in one line naming the valid choices, and writes nothing."""
import json
import subprocess
import sys

import pytest
import torch

from bench.run import main
from tests.conftest import FAST, ROOT, bench_env, run_bench

CASES = [
    (["method=nope"], "unknown method 'nope'; choose one of: diffusion, drifting, edm, flow, meanflow"),
    (["train.lr=abc"], "train.lr: Value 'abc'"),
    (["train.foo=1"], "unknown config key 'train.foo'; valid keys of train: steps, batch_size, lr"),
    (["+train.foo=1"], "unknown config key 'train.foo'"),
    (["+method.bogus=2"], "unknown config key 'method.bogus'"),
    (["nope=1"], "unknown config key 'nope'"),
    (["data=nowhere"], "unknown data 'nowhere'; choose one of:"),
    (["eval.nfe=[1,4]"], "drifting generates in one network evaluation: eval.nfe must be [1], got 4"),
    (["eval.nfe=[x]"], "eval.nfe[0]: Value 'x'"),
    (["eval.weights=[ema_0.5]"], "choose from: raw, ema_0.99, ema_0.999"),
    (["eval.metrics=[nope]"], "eval.metrics: unknown ['nope']"),
    (["data=moons", "eval.metrics=[modes]"], "metric modes cannot run on data 'moons'"),
    (["data=digits"], "not found; make it with: python -m bench.run task=pretrain_encoder data=digits results_dir="),
    (["method=flow", "data=mnist", "data.root=/nowhere"], "data.root=/nowhere: no MNIST files (expected /nowhere/"
                                                          "MNIST/raw/train-images-idx3-ubyte); set data.root=PATH"),
    (["seed=one"], "seed: Value 'one'"),
    (["device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["train.schedule=linear"], "train.schedule must be one of ['constant', 'cosine']"),
    (["method.group_size=7"], "must be >= 2 and divide train.batch_size=1024"),
    (["tag=a/b"], "tag='a/b' may only hold"),
    (["train.accum_steps=2"], "method drifting: train.accum_steps=2 is refused: the drift loss's scale S"),
    (["method=meanflow", "train.compile=true"], "method meanflow cannot run under torch.compile"),
    (["device=cpu", "eval.cuda_graphs=true"], "eval.cuda_graphs needs a CUDA device, this run samples on cpu"),
    (["eval.precision=fp16"], "eval.precision must be train, fp32 or bf16, got 'fp16'"),
    (["-m", "seed=0,1", "method=drifting,nope"], "unknown method 'nope'"),
]


def _existing(results):
    keep = results / "records" / "existing.json"
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    return keep


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_fails_in_one_line_without_writing(results, args, message, monkeypatch, capsys):
    keep = _existing(results)
    monkeypatch.setattr(sys, "argv", ["bench.run", f"results_dir={results}", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bench.run: error: ") and message in lines[0], lines[0]
    assert sorted(p.name for p in results.rglob("*")) == ["existing.json", "records"]
    assert keep.read_text() == "{}"


@pytest.mark.parametrize("args", [["method=nope"], ["train.lr=abc"]])
def test_command_line_exits_nonzero_with_one_line(results, args):
    keep = _existing(results)
    proc = run_bench(*args, results=results, check=False, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("bench.run: error: ")
    assert keep.read_text() == "{}" and len(list(results.rglob("*"))) == 2


def test_changed_training_config_is_refused_with_a_diff_and_tag_makes_a_new_run(results):
    run_bench(*FAST, results=results)
    record = results / "records" / "drifting-ring8-mlp-s0.json"
    before = record.read_bytes()
    proc = run_bench(*FAST, "train.lr=0.002", results=results, check=False)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "exists with another training config (train.lr: 0.003 -> 0.002)" in line and "tag=NAME" in line
    assert record.read_bytes() == before
    run_bench(*FAST, "train.lr=0.002", "tag=lr2", results=results)
    assert (results / "records" / "drifting-ring8-mlp-s0-lr2.json").exists()


def test_divergence_prints_one_line_writes_a_strict_json_record_and_keeps_the_last_good_checkpoint(results):
    proc = run_bench(*FAST, "train.lr=1e30", "train.ckpt_every_steps=1", results=results, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "training diverged: non-finite" in lines[0] and "lower train.lr" in lines[0]
    ck = torch.load(results / "runs" / "drifting-ring8-mlp-s0" / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.isfinite(p).all() for p in ck["net"].values())
    assert f"last good checkpoint (step {ck['step']})" in lines[0]
    text = (results / "records" / "drifting-ring8-mlp-s0.json").read_text()
    rec = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))
    train = rec["train"]
    assert train["status"] == "diverged" and rec["evals"] == [] and train["error"] == lines[0].split("error: ", 1)[1]
    diverged = dict(train["diverged"])
    assert diverged.pop("what") in ("loss", "loss and gradient norm")     # a NaN loss has NaN gradients too
    assert diverged == {"step": ck["step"], "checkpoint_step": ck["step"],
                        "checkpoint": str(results / "runs" / "drifting-ring8-mlp-s0" / "checkpoints" / "last.pt")}


def _one_line(proc, code: int, message: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1, (proc.returncode, proc.stderr)
    assert lines[0].startswith("bench.run: error: ") and message in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("where,message", [("", "is a file, not a folder"), ("sub", "goes through the file")])
def test_results_dir_that_is_or_goes_through_a_file_is_refused(tmp_path, where, message, monkeypatch, capsys):
    target = tmp_path / "afile"
    target.write_text("keep")
    monkeypatch.setattr(sys, "argv", ["bench.run", f"results_dir={target / where if where else target}"])
    with pytest.raises(SystemExit) as exit_:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and message in lines[0], lines
    assert target.read_text() == "keep"


def _in_own_mount(tmp_path, options: str, *args: str):
    """``bench.run`` inside a private mount namespace with a tmpfs (``options``) on ``tmp_path/disk``: a real
    read-only or full file system, as any user (``unshare -rm``: a user namespace) or as root where user
    namespaces are off (``unshare -m``). Skips where neither is allowed (e.g. a container's seccomp)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    for unshare in (["unshare", "-rm"], ["unshare", "-m"]):
        probe = subprocess.run([*unshare, "sh", "-c", f"mount -t tmpfs -o {options} none {disk}"],
                               capture_output=True)
        if probe.returncode == 0:
            break
    else:
        pytest.skip(f"no private tmpfs mount here: {probe.stderr.decode().strip()}")
    # After the run, list what is left on the private disk (it vanishes with the namespace).
    script = (f'mount -t tmpfs -o {options} none "$1" || exit 99; d="$1"; shift; "$@"; rc=$?; '
              f'echo LEFT; find "$d" -type f | sort; exit $rc')
    return subprocess.run([*unshare, "sh", "-c", script, "sh", str(disk), sys.executable, "-m", "bench.run",
                           f"results_dir={disk / 'results'}", *args], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=600), disk


def test_an_unwritable_results_dir_is_refused_by_trying_to_write(tmp_path):
    proc, _ = _in_own_mount(tmp_path, "ro,size=64k", *FAST)
    _one_line(proc, 2, "cannot write in ")
    assert "(Read-only file system); choose a writable results_dir" in proc.stderr


def test_a_full_disk_ends_in_one_line_and_leaves_no_torn_file(tmp_path):
    """512 KiB: the config and the log fit, the first checkpoint (about 2.8 MB) does not."""
    proc, disk = _in_own_mount(tmp_path, "size=512k", *FAST)
    _one_line(proc, 1, "no space left on the device (ENOSPC) writing ")
    assert "run the same command again" in proc.stderr
    left = proc.stdout.split("LEFT\n", 1)[1].split()
    run = disk / "results" / "runs" / "drifting-ring8-mlp-s0"
    assert left == [str(run / "config.json"), str(run / "lock"), str(run / "train_log.jsonl")]


def test_help_is_short_and_lists_the_real_choices():
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--help"], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0 and proc.stderr == "" and len(out.splitlines()) <= 30
    assert "method    diffusion, drifting, edm, flow, meanflow  [default drifting]" in out
    assert "launcher  local, slurm, submitit_local" in out and "results_dir" in out and "README.md" in out
    assert "hydra/" not in out and "method_data" not in out


@pytest.mark.parametrize("args", [["train.foo=1"], ["train.lr=abc"], ["nope=1"], ["eval.num_samples=x"],
                                  ["-m", "seed=0,1", "train.steps=0"]])
def test_mistakes_found_before_torch_is_imported(args):
    """The fast path: these are refused by composing and the torch-free checks (bench.tasks.precheck)."""
    code = ("import sys; from bench.run import main; sys.argv = ['bench.run', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=bench_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

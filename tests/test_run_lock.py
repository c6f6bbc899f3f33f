"""One process per run id (bench/lock.py): a live holder makes a second process refuse in one line naming
it, a killed holder's lock is taken over, evaluations of a finished run take turns."""
import json
import signal
import subprocess
import sys
import time

import pytest

from bench.errors import RunError
from bench.lock import RunBusy, run_lock
from tests.conftest import FAST, ROOT, bench_env, run_bench

RUN_ID = "drifting-ring8-mlp-s0"
# A process that holds a run's lock (the real flock of bench.lock) until a line arrives on its stdin.
HOLDER = ("import sys; from bench.lock import run_lock\n"
          "with run_lock(sys.argv[1]):\n"
          "    print('held', flush=True); sys.stdin.readline()\n")


def _holder(run_dir) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT, env=bench_env(), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_refuses_naming_its_holder_and_a_clean_exit_leaves_no_holder(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunBusy) as e:
            with run_lock(tmp_path / "run"):
                pass
        assert isinstance(e.value, RunError) and "\n" not in str(e.value)
        assert f"run 'run' is in use by pid {holder.pid} on host " in str(e.value) and " since 20" in str(e.value)
    finally:
        holder.communicate("\n", timeout=30)
    assert (tmp_path / "run" / "lock").read_text() == ""         # released cleanly: nobody is named
    notes = []
    with run_lock(tmp_path / "run", note=notes.append):
        assert json.loads((tmp_path / "run" / "lock").read_text())["pid"] > 0
    assert notes == []


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_note(tmp_path):
    holder = _holder(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    notes = []
    with run_lock(tmp_path / "run", note=notes.append):
        pass
    assert len(notes) == 1 and f"taking over the lock left by pid {holder.pid}" in notes[0]
    assert "another host" not in notes[0]


def test_a_second_run_on_a_live_run_id_refuses_and_the_first_is_unharmed(tmp_path):
    """Two real ``bench.run`` processes on one run id: the second refuses in one line naming the first."""
    results = tmp_path / "results"
    args = [*FAST, "train.steps=3000", "train.ckpt_every_steps=100", "train.log_every=100"]
    first = subprocess.Popen([sys.executable, "-m", "bench.run", f"results_dir={results}", *args], cwd=ROOT,
                             env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = results / "runs" / RUN_ID / "train_log.jsonl"
    try:
        deadline = time.time() + 300
        while not log.exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, "the first run ended before the second started; make it longer"
        second = run_bench(*args, results=results, check=False)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 1 and len(lines) == 1, second.stderr
        assert lines[0].startswith(f"bench.run: error: run '{RUN_ID}' is in use by pid {first.pid} on host ")
        assert "bench.run" in lines[0] and "train.steps=3000" in lines[0]           # the holder's command
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    rows = [json.loads(r)["step"] for r in log.read_text().splitlines()]
    assert rows == sorted(set(rows)), "a step was logged twice"
    notes = []
    with run_lock(results / "runs" / RUN_ID, note=notes.append):
        pass
    assert len(notes) == 1 and f"pid {first.pid}" in notes[0]


def test_evaluations_of_a_finished_run_take_turns(finished_run):
    results = finished_run
    holder = _holder(results / "runs" / RUN_ID)
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", f"results_dir={results}", *FAST,
                             "eval.weights=[raw]"], cwd=ROOT, env=bench_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stderr.readline()
    assert f"{RUN_ID}: waiting for pid {holder.pid}" in first and "take turns" in first
    holder.communicate("\n", timeout=30)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    record = json.loads((results / "records" / f"{RUN_ID}.json").read_text())
    assert sorted(ev["weights"] for ev in record["evals"]) == ["ema_0.99", "raw"]

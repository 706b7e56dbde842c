"""Job locks of the sweep runner (held, skipped, waited for, freed by a killed holder),
re-planning after the lock, ``--slurm.*`` options and the SLURM array as submitted (sbatch
faked: no cluster, no training)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from ablations.job_lock import held, held_elsewhere, lock_path
from ablations.jobs import DONE, FINISHED, SKIPPED, SweepContext, execute
from ablations.launch import SweepTask, slurm_minutes, slurm_parameters
from ablations.plan import RESUME, START, current_action
from ablations.runner import cli, split_slurm
from ablations.sweeps import SweepError, load_sweep


def _holder(path):
    """Another process holding the lock ``path`` until killed."""
    code = (
        "import sys, time; from filelock import FileLock; "
        f"lock = FileLock({str(path)!r}); lock.acquire(); print('held', flush=True); "
        "time.sleep(120)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _context(tmp_path, **kwargs):
    return SweepContext(load_sweep("ablation-efa"), "quick", None, tmp_path, "g", **kwargs)


def _fake_fit(ctx, calls):
    """A stand-in for ``ptx fit``: writes a finished record, counts its calls."""

    def run(args):
        name = args[args.index("--name") + 1]
        calls.append((name, args[-1]))
        run_dir = ctx.root / ctx.group / name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps({"status": "finished", "test": {}}))
        return 0

    return run


def test_a_held_job_is_skipped_and_a_killed_holders_lock_is_free(tmp_path):
    ctx, calls = _context(tmp_path), []
    job = ctx.job("efa_net", 0)
    path = lock_path(job.run_dir)
    assert path == tmp_path / "g" / ".locks" / "efa_net-s0.lock"
    holder = _holder(path)
    try:
        assert held_elsewhere(path)
        status, note = execute(ctx, job, _fake_fit(ctx, calls))
        assert status == SKIPPED and "another runner holds its lock" in note and not calls
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean release
        holder.wait()
    assert not held_elsewhere(path)  # the OS released it
    assert execute(ctx, job, _fake_fit(ctx, calls))[0] == FINISHED
    assert calls == [("efa_net-s0", "--overwrite")]
    with held(path) as mine:  # released again after the job
        assert mine


def test_wait_blocks_until_the_holder_is_done_then_does_not_redo_its_work(tmp_path):
    ctx, calls = _context(tmp_path), []
    job = ctx.job("efa_net", 0)
    holder = _holder(lock_path(job.run_dir))
    outcome = {}
    waiter = threading.Thread(
        target=lambda: outcome.update(r=execute(ctx, job, _fake_fit(ctx, calls), wait=True))
    )
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and not calls  # waiting
    _fake_fit(ctx, [])(ctx.args(job))  # meanwhile the holder finishes the run ...
    holder.kill()  # ... and exits
    holder.wait()
    waiter.join(timeout=30)
    assert outcome["r"] == (DONE, "finished meanwhile by another runner") and not calls


def test_current_action_with_force_keeps_what_this_invocation_made(tmp_path):
    run_dir = tmp_path / "r-s0"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    before = time.time() + 5  # an invocation started after the checkpoint was written
    assert current_action(run_dir) == RESUME
    assert current_action(run_dir, force=True, since=before) == START
    assert current_action(run_dir, force=True, since=before - 3600) == RESUME
    (run_dir / "metrics.json").write_text(json.dumps({"status": "finished"}))
    assert current_action(run_dir, force=True, since=before - 3600) == DONE
    assert current_action(run_dir, force=True, since=before) == START


def test_slurm_options():
    argv = ["x", "--slurm.partition", "gpu", "--slurm.gpus-per-task=1", "--slurm.time", "4:00:00"]
    argv += ["--slurm.setup", "module load cuda", "--slurm.setup", "source env", "--force"]
    rest, slurm = split_slurm(argv)
    assert rest == ["x", "--force"]
    assert slurm == {
        "partition": "gpu",
        "gpus_per_task": "1",
        "time": "4:00:00",
        "setup": ["module load cuda", "source env"],
    }
    params = slurm_parameters(slurm)
    assert params["gpus_per_task"] == 1 and params["time"] == 240
    assert [slurm_minutes(t) for t in ("90", "1:30", "2-00:00:00", "1-12", "0:0:30")] == [
        90, 2, 2880, 2160, 1,
    ]  # fmt: skip
    with pytest.raises(SweepError, match="--slurm.time"):
        slurm_minutes("four hours")
    with pytest.raises(SweepError, match="needs a value"):
        split_slurm(["--slurm.partition"])


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` and ``srun`` on PATH: sbatch keeps each script and prints a job id."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\n"
        f"n=$(( $(ls {record} | wc -l) + 4242 ))\n"
        f'for last; do :; done; cp "$last" {record}/$n.sh\n'
        'echo "Submitted batch job $n"\n'
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_the_slurm_launcher_submits_one_array_and_a_dependent_report(tmp_path, fake_slurm, capsys):
    argv = ["ablation-efa", "--launcher", "slurm", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--profile", "quick", "--parallel", "2", "--slurm.partition", "gpu"]
    argv += [
        "--slurm.gpus-per-task",
        "1",
        "--slurm.time",
        "04:00:00",
        "--",
        "--trainer.devices",
        "1",
    ]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 4 array tasks as SLURM job 4242" in out
    assert "the report (job 4243) runs after them" in out and "squeue -j 4242,4243" in out
    array = (fake_slurm / "4242.sh").read_text()
    for line in ("--array=0-3%2", "--partition=gpu", "--gpus-per-task=1", "--time=240"):
        assert f"#SBATCH {line}" in array
    assert "--signal=USR2@90" in array and "srun" in array  # submitit's preemption signal
    report = (fake_slurm / "4243.sh").read_text()
    assert "#SBATCH --dependency=afterany:4242" in report and "--partition=gpu" in report
    assert "gpus" not in report and "--time=60" in report
    # the pickled array tasks are the local runner's jobs, with the extra fit arguments
    folder = tmp_path / "runs" / "ablation-efa" / ".submitit"
    from submitit.core.utils import DelayedSubmission

    tasks = [DelayedSubmission.load(p).function for p in sorted(folder.rglob("*.pkl"))]
    tasks = [t for t in tasks if isinstance(t, SweepTask)]
    assert sorted(t.cell_id for t in tasks) == sorted(
        c.id for c in load_sweep("ablation-efa").cells
    )
    requeued = tasks[0].checkpoint()  # what submitit resubmits on preemption: the same task
    assert requeued.function is tasks[0] and not requeued.args
    job = tasks[0].ctx.job(tasks[0].cell_id, 0)
    assert tasks[0].ctx.args(job)[-3:] == ["--overwrite", "--trainer.devices", "1"]
    assert cli(["ablation-efa", "--slurm.partition", "gpu", "--dry-run"]) == 2
    assert "needs --launcher slurm" in capsys.readouterr().err

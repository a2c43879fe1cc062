"""Crash safety: `refmaml train` processes killed (SIGKILL) at many random moments, most of them
in the middle of writing a checkpoint, always leave either the previous or the new complete
checkpoint, and resuming any of them reproduces the uninterrupted run bit for bit."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from refmaml import train

KILLS = 24  # kill points per run of this test (RELIABILITY.md quotes the count)
CONFIG = train.Config(method="metasgd", iterations=40, meta_batch=4, support=5, query=5, inner_steps=2,
                      inner_lr=0.3, outer_lr=0.01, eval_every=10, curve_tasks=4, seed=17)


def _argv(path, out):
    c = CONFIG
    return [sys.executable, "-m", "refmaml", "train", "--quiet", "--method", c.method,
            "--iterations", str(c.iterations), "--meta-batch", str(c.meta_batch), "--support", str(c.support),
            "--query", str(c.query), "--inner-steps", str(c.inner_steps), "--inner-lr", str(c.inner_lr),
            "--outer-lr", str(c.outer_lr), "--eval-every", str(c.eval_every), "--curve-tasks",
            str(c.curve_tasks), "--seed", str(c.seed), "--family", c.family, "--l2", str(c.l2),
            "--backend", c.backend, "--checkpoint", str(path), "--checkpoint-every", "1",
            "--eval-tasks", "2", "--out", str(out)] + (["--resume", str(path)] if path.exists() else [])


@pytest.mark.slow
def test_killed_training_always_leaves_a_complete_checkpoint(tmp_path):
    _kill_and_resume(tmp_path, KILLS)


def test_one_killed_training_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    """The fast lane's share of the test above: one kill point."""
    _kill_and_resume(tmp_path, 1)


def _kill_and_resume(tmp_path, count):
    """Kill ``count`` training processes at random moments; each leaves a complete checkpoint
    that resumes to the uninterrupted run, to the bit."""
    straight = train.train(CONFIG)
    rng = np.random.default_rng(2026)
    path = tmp_path / "run.npz"
    kills, mid_write, seen = 0, 0, []
    attempts = 0
    while kills < count:
        attempts += 1
        assert attempts < 6 * count, "the processes finished before they could be killed"
        before = train.load(path).iteration if path.exists() else 0
        proc = subprocess.Popen(_argv(path, tmp_path / "out"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            # Wait until this process has saved at least once (it then saves every iteration),
            # then kill it after a random further delay.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if path.exists() and os.path.getmtime(path) > 0 and _iteration(path) > before:
                    break
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0, 0.03)))
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        temporary = [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
        state = train.load(path)  # never a partial file: this raises if the checkpoint is damaged
        assert state.iteration >= before  # the previous checkpoint or a newer one
        if not finished:
            kills += 1
            mid_write += bool(temporary)
            seen.append(state.iteration)
            # Resuming this checkpoint gives the uninterrupted run's parameters, to the bit.
            copy = tmp_path / f"copy{kills}.npz"
            shutil.copy(path, copy)
            resumed = train.train(CONFIG, resume=copy)
            for k in straight.params:
                assert np.array_equal(resumed.params[k], straight.params[k])
            assert resumed.losses == straight.losses and resumed.curve == straight.curve
        for p in temporary:
            os.unlink(tmp_path / p)
        if state.iteration == CONFIG.iterations:
            path.unlink()  # a run completed: start another
    print(f"{kills} kill points at iterations {seen}; {mid_write} left a temporary file (killed mid-write)")


def _iteration(path):
    try:
        return train.load(path).iteration
    except ValueError:
        return 0

"""A real `refmaml train` process killed once its checkpoint shows progress (tests only)."""

import dataclasses
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from refmaml import train


def kill_when_saved(args, path, at_least, log, timeout=120):
    """Start ``python -m refmaml train *args``, SIGKILL it once the checkpoint at ``path`` holds at
    least ``at_least`` iterations (stderr to ``log``); returns the state the kill left there."""
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "refmaml", "train", *args],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and train.load(path).iteration >= at_least:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.02)
        else:
            pytest.fail(f"the training process made no progress in {timeout} s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return train.load(path)


def assert_resumes_exactly(path, killed, more):
    """Resuming ``path`` (holding ``killed``) for ``more`` iterations gives the uninterrupted run's
    parameters, losses and curve bit for bit."""
    target = dataclasses.replace(killed.config, iterations=killed.iteration + more)
    resumed = train.train(target, resume=path)
    straight = train.train(target)
    assert np.array_equal(resumed.params["theta"], straight.params["theta"])
    assert resumed.losses == straight.losses and resumed.curve == straight.curve

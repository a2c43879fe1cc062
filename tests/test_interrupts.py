"""Ctrl-C and closed pipes on the command line (issue: clean interrupts, readable output).

A real SIGINT reaches `refmaml train` while it saves checkpoints: it prints one line (where the
last checkpoint is, at which iteration, and the command that resumes it), exits 130, prints no
traceback, and leaves a checkpoint that loads. Output into a pipe whose reader has gone ends
quietly: no traceback, no "Exception ignored".
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from refmaml import train


@pytest.mark.slow
def test_ctrl_c_during_training_says_where_the_checkpoint_is(tmp_path):
    path = tmp_path / "run.npz"
    log = tmp_path / "stderr.txt"
    args = ["--family", "sinusoid", "--method", "fomaml", "--iterations", "100000", "--checkpoint", str(path),
            "--checkpoint-every", "20", "--quiet", "--out", str(tmp_path / "out")]
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "refmaml", "train", *args], stdout=subprocess.DEVNULL,
                                stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not (path.exists() and train.load(path).iteration >= 20):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    last = text.strip().splitlines()[-1]
    saved = train.load(path)
    assert last == (f"refmaml train: interrupted; the last checkpoint is {path} (iteration {saved.iteration}); "
                    f"resume with: refmaml train --resume {path} --iterations 100000")
    # the command it names resumes, and says from where
    resumed = subprocess.run([sys.executable, "-m", "refmaml", "train", "--resume", str(path), "--iterations",
                              str(saved.iteration + 2), "--quiet", "--eval-tasks", "2", "--out", str(tmp_path / "again")],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {path} from iteration {saved.iteration} of {saved.iteration + 2}" in resumed.stderr


@pytest.mark.slow
def test_ctrl_c_during_the_demo_is_one_line(tmp_path):
    """The demo saves its files at the end: Ctrl-C while it trains says so, in one line, exit 130."""
    with subprocess.Popen([sys.executable, "-m", "refmaml", "demo", "--out", str(tmp_path / "demo")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 120
        lines = []
        while not any(line.startswith("meta-training") for line in lines):  # training has begun
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stderr.readline())
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest and rest.rstrip().splitlines()[-1] == "refmaml demo: interrupted; nothing was saved"


@pytest.mark.parametrize("command, code", [(["explain"], 141), (["explain", "--sizes", "2,3,1"], 141),
                                           (["audit"], 141), (["--version"], 0)])
def test_output_into_a_closed_pipe_ends_quietly(command, code):
    """`refmaml ... | head -1` where the reader has gone before the command writes: its pipe's read
    end is closed first, so the first write fails for certain (not only when the output outgrows
    the pipe's buffer). The command says nothing and exits 141, as a shell reports SIGPIPE
    (``--version``: 0, argparse drops its own failed write)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "refmaml", *command], stdout=write, stderr=subprocess.PIPE,
                              timeout=120)
    finally:
        os.close(write)
    err = done.stderr.decode()
    assert done.returncode == code and err == "", err

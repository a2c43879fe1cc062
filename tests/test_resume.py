"""Resuming with `refmaml train --resume`: the resumed run keeps saving to the file it resumed from,
says where, refuses fewer iterations than the file holds, and survives a kill as a fresh run does."""

import dataclasses

import pytest

from refmaml import cli, train

from .processes import assert_resumes_exactly, kill_when_saved

ARGS = ["--family", "synthetic-binary", "--method", "fomaml", "--inner-steps", "2", "--meta-batch", "4",
        "--support", "6", "--query", "5", "--eval-every", "10", "--curve-tasks", "3", "--eval-tasks", "5",
        "--quiet"]


def test_a_resumed_run_saves_to_the_checkpoint_it_came_from(tmp_path, capsys):
    path = tmp_path / "folder" / "run.npz"
    out = ["--out", str(tmp_path / "out")]
    assert cli.main(["train", *ARGS, "--iterations", "20", "--checkpoint", str(path), *out]) == 0
    captured = capsys.readouterr()
    assert f"created the folder {path.parent}" in captured.err  # the folder is created, and said so
    assert f"checkpoint: {path} (iteration 20)" in captured.out
    assert cli.main(["train", "--resume", str(path), "--iterations", "35", "--quiet", "--eval-tasks", "5", *out]) == 0
    assert f"checkpoint: {path} (iteration 35)" in capsys.readouterr().out
    assert train.load(path).iteration == 35  # iterations 20-35 are saved, where the run came from
    other = tmp_path / "elsewhere.npz"
    assert cli.main(["train", "--resume", str(path), "--iterations", "40", "--checkpoint", str(other), "--quiet",
                     "--eval-tasks", "5", *out]) == 0
    assert train.load(other).iteration == 40 and train.load(path).iteration == 35


def test_resuming_to_fewer_iterations_is_refused_and_to_as_many_reports_the_run(tmp_path, capsys):
    path = tmp_path / "run.npz"
    out = ["--out", str(tmp_path / "out")]
    assert cli.main(["train", *ARGS, "--iterations", "15", "--checkpoint", str(path), *out]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(path), "--iterations", "10", "--quiet", *out]) == 2
    assert "holds 15 iterations, more than --iterations 10" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(path), "--iterations", "15", "--quiet", "--eval-tasks", "5", *out]) == 0
    captured = capsys.readouterr()
    assert "is complete at 15 iterations" in captured.err and "results:" in captured.out
    assert train.load(path).iteration == 15
    with pytest.raises(ValueError, match="holds 15 iterations, more than iterations=10"):
        train.train(dataclasses.replace(train.load(path).config, iterations=10), resume=path)


def test_a_resumed_process_killed_mid_way_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    """A real `refmaml train --resume` subprocess, continuing a saved run and SIGKILLed once its
    checkpoint shows progress past the point it resumed from: the file it resumed from now holds
    the later state, and resuming that gives the uninterrupted run bit for bit."""
    path = tmp_path / "run.npz"
    assert cli.main(["train", *ARGS, "--iterations", "30", "--checkpoint", str(path), "--out",
                     str(tmp_path / "out")]) == 0
    log = tmp_path / "stderr.txt"
    killed = kill_when_saved(["--resume", str(path), "--iterations", "1000000", "--checkpoint-every", "7", "--quiet",
                              "--out", str(tmp_path / "out2")], path, 80, log)
    assert 80 <= killed.iteration < 1000000
    assert_resumes_exactly(path, killed, 10)
    assert f"checkpoints: {path}" in log.read_text()  # the resumed run said where it writes

"""Hostile-but-realistic faults with real processes and files: two writers on one run directory,
checkpoints that would run code or belong to another run, damaged run records, duplicated suite entries."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from test_faults import HARNESS, RUN, _row_count, harness, reference, rows  # noqa: F401  (fixture)


def _finished_copy(reference: Path, tmp_path: Path) -> Path:
    """A copy of the reference run made unfinished again (DONE and absolute.json removed)."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "DONE").unlink()
    (out / "absolute.json").unlink()
    return out


# -- one writer per run directory ---------------------------------------------------------------

def test_a_second_writer_on_one_run_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    long_run = [a if a != "1500" else "50000" for a in RUN] + ["--out", str(out)]
    first = subprocess.Popen([HARNESS, *long_run], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while _row_count(out) < 2 and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before a second writer could try"
        second = harness(*long_run)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        line = second.stderr.strip()
        assert line.startswith(f"harness: error: run directory {str(out)!r} is being written by pid {first.pid} "
                               f"on host {socket.gethostname()} since ")
        assert line.endswith("; wait for it to finish or stop it (one writer per run)") and "\n" not in line
        assert first.poll() is None  # the first writer goes on undisturbed
    finally:
        first.kill()
        first.wait()
    iterations = [int(r["iteration"]) for r in rows(out)]
    assert iterations == list(range(len(iterations)))  # nothing doubled or interleaved
    assert not (out / "DONE").exists()


def test_the_lock_goes_with_a_killed_process(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([HARNESS, *RUN, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _row_count(out) < 2 and time.time() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait()
    assert harness(*RUN, "--out", str(out)).returncode == 0


@pytest.mark.parametrize("kind, text, needle", [
    ("bench", '[suite]\nschemes = ["happo"]\ntasks = ["mpe/simple_spread"]\nseeds = [1, 2, 1]\nsteps = 50\n',
     "[suite] seeds lists 1 more than once"),
    ("bench", '[suite]\nschemes = ["happo"]\ntasks = ["mpe/simple_spread", "mpe/simple_spread"]\nseeds = 1\nsteps = 50\n',
     "[suite] tasks lists 'mpe/simple_spread' more than once"),
    ("bench", '[suite]\nschemes = ["happo", "happo"]\ntasks = ["mpe/simple_spread"]\nseeds = 1\nsteps = 50\n',
     "[suite] schemes lists 'happo' more than once"),
    ("sweep", '[sweep]\nscheme = "happo"\ntasks = ["mpe/simple_spread"]\nseeds = [3, 3]\nsteps = 50\n',
     "[sweep] seeds lists 3 more than once"),
    ("sweep", '[sweep]\nscheme = "happo"\ntasks = ["mpe/simple_spread", "mpe/simple_spread"]\nsteps = 50\n',
     "[sweep] tasks lists 'mpe/simple_spread' more than once"),
])
def test_suites_and_sweeps_refuse_duplicates_before_anything_runs(tmp_path, kind, text, needle):
    path = tmp_path / "file.toml"
    path.write_text(text)
    res = harness(kind, str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# -- checkpoints that cannot run code, and foreign ones ---------------------------------------

class _Payload:
    """A pickle that runs a shell command when unpickled with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_checkpoint_runs_no_code_and_falls_back(reference, tmp_path):
    out = _finished_copy(reference, tmp_path)
    marker = tmp_path / "code_ran"
    with open(out / "checkpoint.pt", "wb") as fh:
        pickle.dump({"iteration": 99, "x": _Payload(marker)}, fh)
    with pytest.raises(Exception):  # a weights-only load refuses it
        torch.load(out / "checkpoint.pt", weights_only=True)
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert not marker.exists(), "loading the checkpoint executed code"
    assert "passed over checkpoint.pt (" in res.stderr and "loading it could run code" in res.stderr
    assert "resuming from checkpoint.prev.pt" in res.stderr
    assert rows(out) == rows(reference)
    # (and the same payload does run code where pickle is trusted)
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_a_checkpoint_of_another_config_or_task_is_not_resumed(reference, tmp_path):
    other = tmp_path / "other_lr"
    assert harness(*RUN, "--set", "lr=0.001", "--out", str(other)).returncode == 0
    out = _finished_copy(reference, tmp_path)
    shutil.copy(other / "checkpoint.pt", out / "checkpoint.pt")
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "passed over checkpoint.pt (ValueError: it belongs to another config" in res.stderr
    assert rows(out) == rows(reference)
    # A checkpoint of another task: refused on its task spec (and its digest), never a traceback.
    task = tmp_path / "other_task"
    assert harness(*[a if a != "mpe/simple_spread" else "mpe/simple_reference" for a in RUN],
                   "--out", str(task)).returncode == 0
    out2 = _finished_copy(reference, tmp_path / "b")
    shutil.copy(task / "checkpoint.pt", out2 / "checkpoint.pt")
    res = harness(*RUN, "--out", str(out2))
    assert res.returncode == 0 and "passed over checkpoint.pt (ValueError: it belongs to another config" in res.stderr
    assert rows(out2) == rows(reference)


def test_a_checkpoint_that_fails_to_apply_falls_back_and_both_failing_names_the_files(reference, tmp_path):
    out = _finished_copy(reference, tmp_path)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["scheme"]["actors"][0] = {"body.0.weight": torch.zeros(3)}  # right run, unusable weights
    torch.save(state, out / "checkpoint.pt")
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "passed over checkpoint.pt (RuntimeError: " in res.stderr and "resuming from checkpoint.prev.pt" in res.stderr
    assert rows(out) == rows(reference)
    out2 = _finished_copy(reference, tmp_path / "b")
    torch.save(state, out2 / "checkpoint.pt")
    (out2 / "checkpoint.prev.pt").write_bytes(b"garbage")
    res = harness(*RUN, "--out", str(out2))
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "every checkpoint in" in res.stderr and "checkpoint.pt (RuntimeError" in res.stderr
    assert "checkpoint.prev.pt (" in res.stderr


# -- damaged run records ------------------------------------------------------------------------

def test_missing_config_or_missing_rows_refuse_to_resume(reference, tmp_path):
    out = _finished_copy(reference, tmp_path)
    (out / "config.json").unlink()
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 2 and "has checkpoints but no config.json" in res.stderr
    out2 = _finished_copy(reference, tmp_path / "b")
    lines = (out2 / "metrics.csv").read_text().splitlines(keepends=True)
    (out2 / "metrics.csv").write_text("".join(lines[:3] + lines[6:]))  # iterations 2-4 lost
    before = (out2 / "metrics.csv").read_text()
    res = harness(*RUN, "--out", str(out2))
    assert res.returncode == 2 and "rows of iterations 2-4 are missing before the checkpoint" in res.stderr
    assert (out2 / "metrics.csv").read_text() == before  # nothing rewritten


@pytest.mark.parametrize("edit", ["config_5", "config_removed", "lr_text", "unknown_key"])
def test_a_config_json_whose_content_was_edited_is_refused(reference, tmp_path, edit):
    import json
    out = _finished_copy(reference, tmp_path)
    record = json.loads((out / "config.json").read_text())
    if edit == "config_5":
        record["config"] = 5
    elif edit == "config_removed":
        del record["config"]
    elif edit == "lr_text":
        record["config"]["lr"] = "x"
    else:
        record["config"]["surprise"] = 1
    (out / "config.json").write_text(json.dumps(record))
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 2 and "config.json: damaged: its config does not match its config_digest" in res.stderr
    assert not (out / "DONE").exists()


@pytest.mark.parametrize("content, needle", [(b"{not json", "not valid JSON"), (b"[1, 2]", "holds a list, not a JSON object"),
                                             (b"\xff\xfe\x00", "not valid JSON")])
def test_a_damaged_config_json_is_a_one_line_error(reference, tmp_path, content, needle):
    out = _finished_copy(reference, tmp_path)
    (out / "config.json").write_bytes(content)
    for args in (RUN + ["--out", str(out)], ["plot", str(tmp_path)]):
        res = harness(*args)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)


# -- durability -----------------------------------------------------------------------------------

def test_rows_are_fsynced_before_each_checkpoint_and_directories_after_renames(tmp_path, monkeypatch):
    """The order of the real fsync and rename calls: a checkpoint is published (renamed into place)
    only after metrics.csv was fsync'ed, and the directory is fsync'ed after the rename."""
    import harness.results as results
    from harness.config import build_config
    from harness.plugins import load_plugins
    from harness.trainer import Trainer

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(str(dst))))
        return real_replace(src, dst)

    real_append = results.RunDir.append_row

    def append_row(self, row):
        events.append(("append", row["iteration"]))
        return real_append(self, row)

    monkeypatch.setattr(results.os, "fsync", fsync)
    monkeypatch.setattr(results.os, "replace", replace)
    monkeypatch.setattr(results.RunDir, "append_row", append_row)
    out = tmp_path / "run"
    cfg = build_config({"n_envs": 2, "rollout_length": 25, "eval_episodes": 2, "eval_envs": 2, "hidden_sizes": [16],
                        "threads": 1, "steps": 200, "checkpoint_interval": 2, "eval_interval": 2})
    Trainer(cfg, load_plugins(), out, progress=False).run_training()
    published = [k for k, e in enumerate(events) if e == ("replace", "checkpoint.pt")]
    assert len(published) == 2  # iterations 2 and 4
    for k in published:
        before = events[:k]
        last_append = max(i for i, e in enumerate(before) if e[0] == "append")
        assert ("fsync", "metrics.csv") in before[last_append:]  # the rows it follows are durable first
        assert ("fsync", "checkpoint.pt.tmp") in before[last_append:]
        assert events[k + 1] == ("fsync", "run")  # then the directory entry of the new checkpoint
    assert events[-1] == ("fsync", "run") and events[-2] == ("replace", "DONE")

"""The edges of the commands, with real processes and files: inputs that used to end in a traceback
(a deeply nested file, a name with a newline, an unwritable video or run directory) are one line
``harness: error: ...`` naming the value and what is accepted, and nothing is left half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_suite, tiny_sweep

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


def harness(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=cwd, env=env)


def one_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The one error line of a refused command, holding every needle."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), res.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [5000, 300])
@pytest.mark.parametrize("command", ["bench", "sweep", "train"])
def test_a_deeply_nested_file_is_one_line(tmp_path, command, depth):
    path = tmp_path / "deep.toml"
    if command == "bench":
        path.write_text(tiny_suite(50) + f"lr = {nested(depth)}\n")
        args = ["bench", path, "--dry-run", "--out", tmp_path / "out"]
    elif command == "sweep":
        path.write_text(tiny_sweep("deep", 50, 1, 1) + f"clip = {{ choices = {nested(depth)} }}\n")
        args = ["sweep", path, "--out", tmp_path / "out"]
    else:
        path.write_text(f"lr = {nested(depth)}\n")
        args = ["train", "--config", path, "--steps", 50, "--out", tmp_path / "out"]
    one_error(harness(*args), str(path), "nested more than 32 levels deep")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, shown", [("a\\nb", r"'a\nb'"), ("a\\u0000b", r"'a\x00b'"), ("a\\tb", r"'a\tb'")])
@pytest.mark.parametrize("kind", ["suite", "sweep"])
def test_a_name_with_a_newline_or_nul_is_refused_and_makes_no_directory(tmp_path, kind, name, shown):
    path = tmp_path / f"{kind}.toml"
    text = tiny_suite(50) if kind == "suite" else tiny_sweep("x", 50, 1, 1)
    path.write_text(text.replace('name = "tiny"', f'name = "{name}"').replace('name = "x"', f'name = "{name}"'))
    res = harness("bench" if kind == "suite" else "sweep", path, cwd=tmp_path)
    one_error(res, f"[{kind}] name={shown}", "printable characters", "a newline or a NUL byte")
    assert not (tmp_path / "results").exists()

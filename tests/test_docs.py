"""Every code block of docs/plugins.md runs, in order, in an empty directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks():
    return [(lang, body) for lang, body in BLOCK.findall(DOC.read_text())]


def test_the_guide_has_runnable_blocks_of_every_kind():
    langs = [lang for lang, _ in blocks()]
    assert {"python", "bash", "toml"} <= set(langs) and len(langs) >= 10


@pytest.mark.slow
def test_every_code_block_of_the_plugin_guide_runs(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for n, (lang, body) in enumerate(blocks()):
        first = body.splitlines()[0]
        if first.startswith("# file: "):
            (tmp_path / first[len("# file: "):].strip()).write_text(body)
        if lang == "toml":
            data = tomllib.loads(body)
            assert "happo_harness" in data["project"]["entry-points"]
        elif lang == "python":
            out = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, capture_output=True, text=True, env=env)
            assert out.returncode == 0, f"block {n}:\n{body}\n{out.stderr}"
        elif lang == "bash":
            out = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, capture_output=True,
                                 text=True, env=env, timeout=600)
            assert out.returncode == 0, f"block {n}:\n{body}\n{out.stdout}\n{out.stderr}"
        else:
            pytest.fail(f"block {n} has an unexpected language {lang!r}")
    # What the prose claims about the linear network: the kit reports its refusal of Gaussian actors.
    out = subprocess.run(["harness", "check-plugin", "linear_net", "--plugin", "linear_net.py"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "FAIL  network linear: box actor" in out.stdout and "only supports discrete actions" in out.stdout
    assert "PASS  network linear: discrete actor" in out.stdout


def test_ci_runs_the_readmes_test_command_verbatim():
    """The README's second command (install and test) is a line of .ci/run, exactly as written, and
    installs what the tests use (the ``test`` extra)."""
    root = DOC.parents[1]
    readme = [body.strip() for lang, body in BLOCK.findall((root / "README.md").read_text()) if lang == "bash"]
    main_job, tests = readme[0], readme[1]
    assert main_job.startswith("python3.11 -m venv .venv") and "harness bench" in main_job
    assert tests.startswith("python3.11 -m venv .venv") and tests.endswith(".venv/bin/pytest")
    assert '".[test]"' in tests
    assert tests in (root / ".ci" / "run").read_text().splitlines()

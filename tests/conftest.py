"""Shared fixtures: the real plugin registries and a tiny-budget config."""

from __future__ import annotations

import subprocess

import pytest
import torch

from harness.plugins import load_plugins

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def regs():
    """Registries filled by the installed built-in plugins (through entry points)."""
    return load_plugins()


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(options)``: a new directory with a tmpfs mounted there with ``options`` (e.g. ``size=64k`` or
    ``ro,size=1m``), unmounted after the test; the test is skipped where mounting is impossible (not root)."""
    mounted = []

    def mount(options: str, name: str = "mnt"):
        mnt = tmp_path / name
        mnt.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True).returncode:
            pytest.skip(f"cannot mount a tmpfs ({options}) here (needs root)")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], capture_output=True)


TINY = {"n_envs": 2, "rollout_length": 25, "eval_episodes": 2, "eval_envs": 2, "eval_interval": 1,
        "hidden_sizes": [32, 32], "threads": 1}

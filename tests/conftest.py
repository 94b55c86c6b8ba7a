"""Shared fixtures: the real plugin registries and a tiny-budget config."""

from __future__ import annotations

import json
import socket
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


def tiny_suite(steps, *, name: str = "tiny", schemes=("happo", "mappo"), seeds="2", eval_interval: int = 1,
               checkpoint_interval: int = 1, extra: str = "") -> str:
    """The text of a suite file on mpe/simple_spread at a tiny budget (2 copies x 25 steps, a [16] network)."""
    return (f'[suite]\nname = "{name}"\nschemes = {json.dumps(list(schemes))}\ntasks = ["mpe/simple_spread"]\n'
            f"seeds = {seeds}\nsteps = {steps}\neval_interval = {eval_interval}\neval_episodes = 2\n"
            f"[config]\nn_envs = 2\nrollout_length = 25\neval_envs = 2\nhidden_sizes = [16]\n"
            f"checkpoint_interval = {checkpoint_interval}\n{extra}")


def tiny_sweep(name: str, steps: int, trials: int, evaluations: int) -> str:
    """The text of a sweep file tuning HAPPO's lr on mpe/simple_spread at a tiny budget, one seed."""
    return (f'[sweep]\nname = "{name}"\nscheme = "happo"\ntasks = ["mpe/simple_spread"]\nsteps = {steps}\n'
            f'seeds = 1\ntrials = {trials}\nevaluations = {evaluations}\neval_episodes = 2\nsampler = "random"\n'
            f'pruner = "none"\n[config]\nn_envs = 2\nrollout_length = 25\neval_envs = 2\nhidden_sizes = [16]\n'
            "[space]\nlr = { low = 1e-4, high = 1e-3, log = true }\n")


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TINY = {"n_envs": 2, "rollout_length": 25, "eval_episodes": 2, "eval_envs": 2, "eval_interval": 1,
        "hidden_sizes": [32, 32], "threads": 1}

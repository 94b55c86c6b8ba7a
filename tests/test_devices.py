"""``device``: where updates run. Tested on CPU (this project's machines have no GPU): ``auto``
resolving to the CPU, one-line errors for devices that cannot run here, checkpoints moving between
device names, and the moves of a scheme and a batch (to PyTorch's ``meta`` device, which every
build has)."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from harness.config import build_config
from harness.devices import move_batch, move_scheme, resolve_device
from harness.errors import HarnessError
from harness.plugins import load_plugins
from harness.trainer import Trainer

from conftest import TINY


def _cfg(**over):
    return build_config({"task": "mpe/simple_spread", **TINY, "steps": 200, "checkpoint_interval": 1, **over})


def _rows(run):
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if not k.endswith("_s") and k != "steps_per_s"} for r in csv.DictReader(fh)]


def test_auto_is_the_cpu_here_and_trains_the_same_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto means cuda here")
    assert resolve_device("auto") == torch.device("cpu")
    regs = load_plugins()
    Trainer(_cfg(), regs, tmp_path / "cpu", progress=False).run_training()
    Trainer(_cfg(device="auto"), regs, tmp_path / "auto", progress=False).run_training()
    assert _rows(tmp_path / "cpu") == _rows(tmp_path / "auto")
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["device"] == "cpu"
    assert _cfg(device="auto").digest() == _cfg().digest()


def test_a_checkpoint_saved_under_one_device_name_resumes_under_another(tmp_path):
    regs = load_plugins()
    run = tmp_path / "run"
    it = Trainer(_cfg(), regs, run, progress=False).iterate()
    for _ in range(3):
        next(it)
    it.close()
    Trainer(_cfg(device="auto"), regs, run, progress=False).run_training()
    Trainer(_cfg(), regs, tmp_path / "whole", progress=False).run_training()
    assert _rows(run) == _rows(tmp_path / "whole")  # the resumed run is the uninterrupted one
    record = json.loads((run / "config.json").read_text())
    assert record["device"] == "cpu" and [r["device"] for r in record["resumes"]] == [str(resolve_device("auto"))]


@pytest.mark.parametrize("device, message", [
    ("gpu", "device='gpu' is not one of: cpu, cuda, cuda:N, auto"),
    ("cuda:99", "device='cuda:99'"),
])
def test_a_device_that_cannot_run_here_is_one_line_before_anything_is_written(tmp_path, device, message):
    res = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--steps", "100", "--out", str(tmp_path / "r"),
                          "--set", f"device={device}"], capture_output=True, text=True)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cuda_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HarnessError, match="CUDA is not available on this machine"):
        resolve_device("cuda")


def test_a_scheme_and_a_batch_move_to_the_device_whole():
    regs = load_plugins()
    trainer = Trainer(_cfg(), regs, None, progress=False)
    try:
        batch, _ = trainer.collect()
        meta = torch.device("meta")
        moved = move_batch(batch, meta)
        tensors = [moved.states, moved.advantages, moved.returns, moved.old_values, *moved.obs, *moved.actions,
                   *moved.old_logp]
        assert all(t.device == meta for t in tensors)
        assert batch.states.device.type == "cpu"  # the original is left alone
        move_scheme(trainer.scheme, meta)
        params = [p for m in [*trainer.scheme.actors, trainer.scheme.critic] for p in m.parameters()]
        assert params and all(p.device == meta for p in params)
        assert all(b.device == meta for b in trainer.scheme.value_norm.buffers())
    finally:
        trainer.close()


def test_a_run_limits_every_native_thread_pool_and_records_the_limits(tmp_path):
    """threads=1 limits torch and the BLAS and OpenMP pools NumPy and torch load (OpenBLAS starts one
    thread per core otherwise, which oversubscribes a machine running two runs side by side)."""
    import json

    from threadpoolctl import threadpool_info, threadpool_limits

    from harness.config import build_config
    from harness.plugins import load_plugins
    from harness.trainer import Trainer
    from conftest import TINY
    with threadpool_limits(limits=2):  # as a fresh process on two cores starts
        trainer = Trainer(build_config({**TINY, "task": "mpe/simple_spread", "steps": 50, "threads": 1}),
                          load_plugins(), tmp_path / "run", progress=False)
        try:
            assert all(p["num_threads"] == 1 for p in threadpool_info())
            assert {p["user_api"] for p in threadpool_info()} >= {"blas"}
            trainer.run_training()
        finally:
            trainer.close()
    pools = json.loads((tmp_path / "run" / "config.json").read_text())["thread_pools"]
    assert pools[0] == {"library": "torch", "api": "torch", "threads": 1}
    assert any(p["api"] == "blas" for p in pools) and all(p["threads"] == 1 for p in pools)

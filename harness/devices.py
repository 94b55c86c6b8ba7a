"""Where updates run (``device = cpu | cuda | cuda:N | auto``): resolving the name, and moving a
scheme's networks and an iteration's batch there. Acting stays on the CPU (the NumPy acting policy, or
CPU copies of the actors), so collection never waits on a device transfer per step; checkpoints are
written from the device's tensors and load on any device (``map_location="cpu"``, then copied to the
networks wherever they are)."""

from __future__ import annotations

from typing import Any

import torch

from harness.config import DEVICE_PATTERN
from harness.errors import HarnessError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; a CUDA name that cannot run here is an error."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise HarnessError(f"device={name!r} is not one of: cpu, cuda, cuda:N, auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"device={name!r}: CUDA is not available on this machine (torch "
                               f"{torch.__version__}); use device=cpu or device=auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HarnessError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def move_scheme(scheme: Any, device: torch.device) -> None:
    """Put a scheme's networks on ``device``: its own ``to(device)`` if it has one, else its
    ``actors``, ``critic`` and ``value_norm`` modules (the optimisers keep the same parameters)."""
    if hasattr(scheme, "to"):
        scheme.to(device)
        return
    modules = list(getattr(scheme, "actors", []) or []) + [getattr(scheme, "critic", None),
                                                          getattr(scheme, "value_norm", None)]
    for m in modules:
        if isinstance(m, torch.nn.Module):
            m.to(device)


def move_batch(batch: Any, device: torch.device) -> Any:
    """A :class:`harness.ppo.Batch` with every tensor on ``device`` (lists of tensors included)."""
    def to(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to(device, non_blocking=True)
        if isinstance(x, list):
            return [to(v) for v in x]
        return x
    return batch._replace(**{name: to(getattr(batch, name)) for name in batch._fields})

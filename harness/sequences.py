"""Recurrent actors: their hidden state while acting, and the sequence chunks they train on.

An actor declares a hidden state with a positive ``hidden_size`` (one flat vector per row; zeros are
its initial state). Its ``act``, ``evaluate`` and ``distribution`` then take two keyword arguments:

- ``hidden`` ``[N, hidden_size]``: the state before the first row of each of ``N`` sequences;
- ``starts`` ``[rows]`` bool: the rows where an episode starts; the actor begins such a row from its
  initial state (zeros), whatever ``hidden`` or the previous row left.

The rows are ``N`` sequences of equal length ``L = rows / N`` one after another (row ``n * L + t``
is step ``t`` of sequence ``n``). Acting is ``L = 1``, and ``act`` returns the state after the step
as a third output. Training is on chunks of ``chunk_length`` consecutive steps of one copy (HARL's
``data_chunk_length``; the actor's ``chunk_length``, :data:`DEFAULT_CHUNK`), each from the state the
actor had at its first step while collecting, so the update scores the same function that acted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from harness.errors import HarnessError

#: Steps per training sequence for a recurrent actor that does not say (HARL's ``data_chunk_length``).
DEFAULT_CHUNK = 10


def hidden_size(actor: Any) -> int:
    """The width of ``actor``'s hidden state (0: a feed-forward actor)."""
    return int(getattr(actor, "hidden_size", 0) or 0)


def is_recurrent(actors: Sequence[Any]) -> bool:
    """Whether any of ``actors`` declares a hidden state."""
    return any(hidden_size(a) > 0 for a in actors)


def chunk_length(actor: Any) -> int:
    """How many consecutive steps one of ``actor``'s training sequences spans."""
    return int(getattr(actor, "chunk_length", DEFAULT_CHUNK))


class Memory:
    """Every agent's hidden state in ``rows`` copies (None for an agent with a feed-forward actor)."""

    def __init__(self, actors: Sequence[Any], rows: int) -> None:
        self.hidden: list[torch.Tensor | None] = [torch.zeros(rows, hidden_size(a)) if hidden_size(a) else None
                                                  for a in actors]


@dataclass
class Sequences:
    """An actor group's training data laid out as chunks: ``count`` chunks of ``length`` rows, one
    after another; ``hidden`` ``[count, H]`` is each chunk's state at its first step, ``starts``
    ``[count * length]`` marks episode starts."""

    length: int
    hidden: torch.Tensor
    starts: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.hidden.shape[0])

    def rows(self, chunks: torch.Tensor | slice) -> torch.Tensor | slice:
        """The row indices of ``chunks`` (a slice: all of them), chunk after chunk."""
        if isinstance(chunks, slice):
            return chunks
        return (chunks[:, None] * self.length + torch.arange(self.length, device=chunks.device)).reshape(-1)

    def inputs(self, chunks: torch.Tensor | slice = slice(None)) -> dict[str, torch.Tensor]:
        """The keyword arguments an actor takes for ``chunks``: ``hidden`` and ``starts``."""
        return {"hidden": self.hidden[chunks], "starts": self.starts[self.rows(chunks)]}


def chunk_index(steps: int, copies: int, length: int) -> torch.Tensor:
    """``[K, length]`` indices into time-major rows (row ``t * copies + c``) of the ``K = steps / length *
    copies`` chunks: chunk ``j * copies + c`` is steps ``j * length ...`` of copy ``c``."""
    t = torch.arange(steps).reshape(steps // length, 1, length)    # [J, 1, L]
    c = torch.arange(copies).reshape(1, copies, 1)                 # [1, E, 1]
    return (t * copies + c).reshape(-1, length)


def arrange(agents: Sequence[int], batch: Any, length: int, device: torch.device | None = None
            ) -> tuple[torch.Tensor, Sequences]:
    """The chunk layout of ``agents``' rows (stacked agent after agent, ``B`` rows each): the index that
    reorders the stacked rows chunk after chunk, and the chunks' :class:`Sequences`."""
    steps, copies = batch.shape
    rows = steps * copies
    base = chunk_index(steps, copies, length)
    index = torch.cat([base.reshape(-1) + k * rows for k in range(len(agents))])
    hidden = torch.cat([batch.hidden[i][base[:, 0]] for i in agents])
    starts = batch.starts[base.reshape(-1)].repeat(len(agents))
    if device is not None:
        index, hidden, starts = index.to(device), hidden.to(device), starts.to(device)
    return index, Sequences(length, hidden, starts)


def check_chunking(actors: Sequence[Any], rollout_length: int, network: str) -> None:
    """Refuse, in one line, a recurrent actor whose chunks do not tile a rollout."""
    for a in actors:
        if hidden_size(a):
            c = chunk_length(a)
            if c < 1 or rollout_length % c:
                raise HarnessError(f"rollout_length={rollout_length} is not a multiple of network {network!r}'s "
                                   f"chunk_length={c}; use a rollout_length that is (or another chunk_length)")


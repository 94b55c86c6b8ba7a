"""Running normalisation of value targets (HARL's debiased EMA of mean and mean square)."""

from __future__ import annotations

import torch
from torch import nn


class ValueNorm(nn.Module):
    """Debiased exponential moving mean/variance of returns (beta 0.99999, variance floor 1e-2).

    The critic predicts normalised values; ``denormalize`` maps them back to returns.
    """

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, var_floor: float = 1e-2) -> None:
        super().__init__()
        self.beta, self.epsilon, self.var_floor = beta, epsilon, var_floor
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The debiased mean and variance."""
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        mean_sq = self.running_mean_sq / debias
        return mean, (mean_sq - mean * mean).clamp(min=self.var_floor)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of returns into the running statistics."""
        x = x.detach().double()
        b = self.beta
        self.running_mean.mul_(b).add_(x.mean() * (1 - b))
        self.running_mean_sq.mul_(b).add_((x * x).mean() * (1 - b))
        self.debiasing_term.mul_(b).add_(1 - b)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return ((x.double() - mean) / var.sqrt()).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return (x.double() * var.sqrt() + mean).to(x.dtype)

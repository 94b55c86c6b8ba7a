"""Action distributions written with plain tensor ops (faster than ``torch.distributions`` for small batches).

Each function works on a batch; log-probabilities of multi-dimensional actions are summed over
dimensions, i.e. the joint ratio over action dimensions is a product.
"""

from __future__ import annotations

import math

import torch

_LOG_2PI = math.log(2.0 * math.pi)


def categorical_sample(logits: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (or take the argmax of) a categorical; return actions ``[B]`` and log-probs ``[B]``."""
    logp_all = torch.log_softmax(logits, dim=-1)
    if deterministic:
        action = logp_all.argmax(dim=-1)
    else:
        action = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
    return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)


def categorical_logp_entropy(logits: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``action`` ``[B]`` and entropies ``[B]``."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def gaussian_sample(mean: torch.Tensor, std: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a diagonal Gaussian (or take its mean); return actions ``[B, d]`` and log-probs ``[B]``."""
    if deterministic:
        action = mean
    else:
        action = mean + std * torch.randn_like(mean)
    return action, gaussian_logp_entropy(mean, std, action)[0]


def gaussian_logp_entropy(mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities ``[B]`` and entropies ``[B]`` of a diagonal Gaussian."""
    log_std = torch.log(std)
    z = (action - mean) / std
    logp = (-0.5 * z * z - log_std - 0.5 * _LOG_2PI).sum(-1)
    entropy = (0.5 + 0.5 * _LOG_2PI + log_std).sum(-1).expand(mean.shape[0])
    return logp, entropy

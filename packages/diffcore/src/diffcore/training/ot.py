"""Mini-batch optimal-transport coupling for flow matching (Tong et al. 2023; Pooladian et al. 2023)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def ot_permutation(x0: Tensor, noise: Tensor) -> Tensor:
    """The permutation ``p`` minimising ``sum_i ||x0_i - noise_p(i)||^2`` (exact assignment, squared
    Euclidean cost over flattened samples). Returns a long tensor on ``noise``'s device."""
    if x0.shape != noise.shape:
        raise ValueError(f"noise: expected shape {tuple(x0.shape)} (that of x0), got {tuple(noise.shape)}")
    a = x0.detach().reshape(len(x0), -1).double().cpu()
    b = noise.detach().reshape(len(noise), -1).double().cpu()
    cost = torch.cdist(a, b) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    perm = torch.empty(len(x0), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm.to(noise.device)


def ot_couple(x0: Tensor, noise: Tensor) -> Tensor:
    """``noise`` reordered so that pairs ``(x0_i, noise_i)`` follow the mini-batch OT plan."""
    return noise[ot_permutation(x0, noise)]

r"""Functions the models share with any PyTorch network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""Dropout, as :func:`torch.nn.functional.dropout`: in training, each
    entry is kept with probability :math:`1 - p` and scaled by
    :math:`1 / (1 - p)`,

    .. math::
        \mathbf{x}' = \mathbf{x} \odot \mathbf{m} / (1 - p), \quad
        m_k = [u_k \ge p], \quad u_k \sim U[0, 1)

    The mask comes from uniform draws in float32 (float64 for float64
    inputs), not from PyTorch's ``bernoulli_``, which on the CPU took 3.3x
    as long as ``uniform_`` for the same entries (2.4 ms against 0.73 ms
    for the 3,200 x 80 states of a 128-molecule batch): a network that
    drops out its node states spent 15% of a training step there. Same
    distribution, another random stream than PyTorch's. Other devices run
    :func:`torch.nn.functional.dropout` (one fused kernel on CUDA).

    Args:
        x: input of any shape.
        p: probability of zeroing an entry. (default: ``0.5``)
        training: apply dropout; otherwise return ``x``. (default: ``True``)
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p has to be between 0 and 1, "
                         f"but got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training)
    if p == 1.0:
        return x * 0.0
    # the draws become the scaled mask in place
    mask = torch.rand(x.shape, device=x.device, dtype=torch.float64 if
                      x.dtype == torch.float64 else torch.float32)
    return x * mask.ge_(p).mul_(1.0 / (1.0 - p)).to(x.dtype)

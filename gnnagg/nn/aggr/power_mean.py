r"""Power mean of the messages with a (learnable) exponent."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import Parameter

from ...ops import CSRGraph, segment_reduce
from .base import SegmentAggregation


class PowerMeanAggregation(SegmentAggregation):
    r"""The power mean (DeeperGCN):

    .. math::
        \mathbf{out}_i = \Big(\frac{1}{d_i}\sum_j \mathbf{x}_j^{p}\Big)^{1/p}

    with inputs and output clamped to ``[clamp_min, clamp_max]`` (as PyG's
    ``PowerMeanAggregation``) so that fractional powers stay real. Nodes
    without messages get 0 (PyG gives them ``clamp_min ** (1/p)``).
    """

    def __init__(self, p: float = 1.0, learn: bool = False, channels: int = 1,
                 clamp_min: Optional[float] = 1e-4,
                 clamp_max: Optional[float] = 100.0):
        super().__init__()
        if not learn and channels != 1:
            raise ValueError("channels > 1 needs learn=True")
        self._init_p = p
        self.learn = learn
        self.channels = channels
        self.p = Parameter(torch.empty(channels)) if learn else p
        self.clamp_min, self.clamp_max = clamp_min, clamp_max
        self.reset_parameters()

    def reset_parameters(self):
        if isinstance(self.p, Tensor):
            self.p.data.fill_(self._init_p)

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        identity = not isinstance(self.p, Tensor) and self.p == 1
        if not identity:
            x = x.clamp(self.clamp_min, self.clamp_max).pow(self.p)
        out = segment_reduce(x, csr.rowptr, "mean")
        if not identity:
            out = out.clamp(self.clamp_min, self.clamp_max).pow(1.0 / self.p)
            nonempty = (csr.degree > 0).view((-1,) + (1,) * (x.dim() - 1))
            out = out * nonempty
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(learn={self.learn})"

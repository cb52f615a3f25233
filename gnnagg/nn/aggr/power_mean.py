r"""Power mean of the messages with a (learnable) exponent."""
from __future__ import annotations

import math
from typing import Optional

from torch import Tensor
from torch_geometric.nn import aggr as pyg_aggr

from ...ops import clamped_power, message_counts, reduce_messages
from .base import SegmentAggregation


class PowerMeanAggregation(SegmentAggregation,
                           pyg_aggr.PowerMeanAggregation):
    r"""The power mean of `"DeeperGCN: All You Need to Train Deeper GCNs"
    <https://arxiv.org/abs/2006.07739>`_ (Li et al., 2020):

    .. math::
        \mathbf{out}_i = \Big(\frac{1}{d_i}\sum_j \mathbf{x}_j^{p}\Big)^{1/p}

    with inputs and output clamped to ``[clamp_min, clamp_max]`` (as PyG's)
    so that fractional powers stay real.

    Deliberate difference from PyG: nodes without messages get 0 (PyG gives
    them ``clamp_min ** (1/p)``), as every other gnnagg aggregation.

    Args:
        p (float, optional): initial power. (default: ``1.0``)
        learn (bool, optional): learn :math:`p`. (default: ``False``)
        channels (int, optional): learn one :math:`p` per feature channel
            (with ``learn``). (default: ``1``)
        clamp_min (float, optional): lower clamp (``None``: none).
            (default: ``1e-4``)
        clamp_max (float, optional): upper clamp (``None``: none).
            (default: ``100.0``)

    Shapes:
        - **input:** messages :math:`(E, F)`, destination index :math:`(E)`
        - **output:** :math:`(N, F)`

    Example::

        >>> from torch_geometric.nn import SAGEConv
        >>> conv = SAGEConv(16, 32, aggr=PowerMeanAggregation(learn=True))
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    def __init__(self, p: float = 1.0, learn: bool = False,
                 channels: int = 1, clamp_min: Optional[float] = 1e-4,
                 clamp_max: Optional[float] = 100.0):
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise TypeError(f"p must be a number, got {p!r}")
        if p == 0 or not math.isfinite(p):
            raise ValueError(f"p must be finite and non-zero (the power mean "
                             f"takes the 1/p-th root), got {p}")
        super().__init__(p, learn, channels, clamp_min, clamp_max)

    reduces_by_index = True

    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        p = self.p
        if self.channels != 1:
            assert isinstance(p, Tensor)
            p = p.view(-1, self.channels)
        if isinstance(p, (int, float)) and p == 1:
            return reduce_messages(x, index, num_segments, "mean", rowptr)
        total = reduce_messages(
            clamped_power(x, p, self.min_value, self.max_value), index,
            num_segments, "sum", rowptr)
        counts = message_counts(index, num_segments, rowptr, x.dtype).view(
            (-1,) + (1,) * (x.dim() - 1))
        out = clamped_power(total / counts.clamp(min=1), 1.0 / p,
                            self.min_value, self.max_value)
        return out * (counts > 0)  # no messages: 0

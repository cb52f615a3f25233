r"""Sum, mean, min, max, product, variance and standard deviation of the
messages, as PyG's aggregations of the same names."""
from __future__ import annotations

from typing import Optional

from torch import Tensor
from torch_geometric.nn import aggr as pyg_aggr

from ...ops import message_stats, segment_reduce
from .base import SegmentAggregation, require_index


class StatAggregation(SegmentAggregation):
    r"""One statistic of :func:`gnnagg.ops.message_stats` per destination;
    several of them share two passes inside :class:`MultiAggregation`."""

    statistic: str
    reduces_by_index = True
    __constants__ = SegmentAggregation.__constants__ + ["statistic"]

    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        return message_stats(x, index, num_segments, [self.statistic],
                             rowptr)[self.statistic]


class SumAggregation(StatAggregation, pyg_aggr.SumAggregation):
    r""":math:`\sum_{j} \mathbf{x}_j`."""
    statistic = "sum"


class MeanAggregation(StatAggregation, pyg_aggr.MeanAggregation):
    r""":math:`\frac{1}{d_i}\sum_{j} \mathbf{x}_j`."""
    statistic = "mean"


class MaxAggregation(StatAggregation, pyg_aggr.MaxAggregation):
    r""":math:`\max_{j} \mathbf{x}_j` (feature-wise)."""
    statistic = "max"


class MinAggregation(StatAggregation, pyg_aggr.MinAggregation):
    r""":math:`\min_{j} \mathbf{x}_j` (feature-wise)."""
    statistic = "min"


class VarAggregation(StatAggregation, pyg_aggr.VarAggregation):
    r""":math:`\max(0, \mathrm{mean}(\mathbf{x}^2) - \mathrm{mean}(\mathbf{x})^2)`
    (PyG's ``semi_grad`` is accepted; gradients are always exact)."""
    statistic = "var"


class StdAggregation(StatAggregation, pyg_aggr.StdAggregation):
    r""":math:`\sqrt{\mathrm{var}}`, 0 (with zero gradient) where the
    variance is at most :data:`gnnagg.ops.segment.STD_EPS`."""
    statistic = "std"


class MulAggregation(SegmentAggregation, pyg_aggr.MulAggregation):
    r""":math:`\prod_{j} \mathbf{x}_j` (feature-wise); 1 for nodes without
    messages. As PyG's, it needs ``index`` (``ptr`` alone raises). The
    product runs on PyTorch's own scatter or segment product, whose
    gradient is exact."""

    reduces_by_index = True

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2) -> Tensor:
        require_index(index)
        # named, not super(): under torch.jit.script self is the script module
        return SegmentAggregation.forward(self, x, index, None, dim_size, dim)

    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        if rowptr is not None:
            return segment_reduce(x, rowptr, "prod")
        out = x.new_ones((num_segments,) + tuple(x.shape[1:]))
        return out.scatter_reduce(0, index.view(
            (-1,) + (1,) * (x.dim() - 1)).expand_as(x), x, "prod")

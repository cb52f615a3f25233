r"""Sum, mean, min, max, variance and standard deviation of the messages."""
from __future__ import annotations

from torch import Tensor

from ...ops import CSRGraph, segment_stats
from .base import SegmentAggregation


class StatAggregation(SegmentAggregation):
    r"""One statistic of :func:`gnnagg.ops.segment_stats` per destination."""

    statistic: str

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        return segment_stats(x, csr.rowptr, [self.statistic])[self.statistic]


class SumAggregation(StatAggregation):
    r""":math:`\sum_{j} \mathbf{x}_j`."""
    statistic = "sum"


class MeanAggregation(StatAggregation):
    r""":math:`\frac{1}{d_i}\sum_{j} \mathbf{x}_j`."""
    statistic = "mean"


class MaxAggregation(StatAggregation):
    r""":math:`\max_{j} \mathbf{x}_j` (feature-wise)."""
    statistic = "max"


class MinAggregation(StatAggregation):
    r""":math:`\min_{j} \mathbf{x}_j` (feature-wise)."""
    statistic = "min"


class VarAggregation(StatAggregation):
    r""":math:`\max(0, \mathrm{mean}(\mathbf{x}^2) - \mathrm{mean}(\mathbf{x})^2)`."""
    statistic = "var"


class StdAggregation(StatAggregation):
    r""":math:`\sqrt{\mathrm{var}}`, 0 (with zero gradient) where the
    variance is at most :data:`gnnagg.ops.statistics.STD_EPS`."""
    statistic = "std"

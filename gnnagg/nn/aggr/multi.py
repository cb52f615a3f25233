r"""Several aggregations of the same messages, computed together."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ...ops import CSRGraph, segment_stats
from .base import SegmentAggregation
from .basic import (MaxAggregation, MeanAggregation, MinAggregation,
                    StatAggregation, StdAggregation, SumAggregation,
                    VarAggregation)
from .power_mean import PowerMeanAggregation
from .softmax import SoftmaxAggregation

AGGREGATIONS = {
    "sum": SumAggregation, "add": SumAggregation, "mean": MeanAggregation,
    "min": MinAggregation, "max": MaxAggregation, "var": VarAggregation,
    "std": StdAggregation, "softmax": SoftmaxAggregation,
    "powermean": PowerMeanAggregation,
}


def resolve_aggregation(aggr: Union[str, Aggregation],
                        **kwargs) -> Aggregation:
    """An aggregation module from its name (``"mean"``, ``"std"``,
    ``"softmax"``, ...) or the module itself."""
    if isinstance(aggr, Aggregation):
        return aggr
    if not isinstance(aggr, str) or aggr.lower() not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggr!r}; choose one of "
                         f"{sorted(AGGREGATIONS)} or pass an Aggregation")
    return AGGREGATIONS[aggr.lower()](**kwargs)


class MultiAggregation(SegmentAggregation):
    r"""Concatenates several aggregations of the same messages:
    :math:`[\mathrm{aggr}_1(\mathcal{X}) \,\|\, \dots \,\|\,
    \mathrm{aggr}_k(\mathcal{X})]`.

    The messages are grouped by destination once for all of them, and every
    statistic (sum, mean, min, max, var, std) comes from one shared call of
    :func:`gnnagg.ops.segment_stats`: ``["mean", "min", "max", "std"]`` takes
    two segment passes where separate aggregations take five. Other gnnagg
    aggregations reuse the grouping; foreign PyG aggregations get the
    original messages.

    Args:
        aggrs: names or :class:`Aggregation` modules.
        aggrs_kwargs: constructor arguments for the named ones.
        mode: only ``"cat"`` (concatenate along the feature dimension).
    """

    def __init__(self, aggrs: List[Union[str, Aggregation]],
                 aggrs_kwargs: Optional[List[Dict[str, Any]]] = None,
                 mode: str = "cat"):
        super().__init__()
        if not isinstance(aggrs, (list, tuple)) or not aggrs:
            raise ValueError("aggrs must be a non-empty list of aggregations")
        if mode != "cat":
            raise ValueError(f"mode {mode!r} is not supported; use 'cat'")
        if aggrs_kwargs is not None and len(aggrs_kwargs) != len(aggrs):
            raise ValueError("aggrs_kwargs needs one entry per aggregation")
        kwargs = aggrs_kwargs or [{}] * len(aggrs)
        self.aggrs = torch.nn.ModuleList(
            resolve_aggregation(a, **kw) for a, kw in zip(aggrs, kwargs))
        self.mode = mode

    def reset_parameters(self):
        for aggr in self.aggrs:
            aggr.reset_parameters()

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2) -> Tensor:
        if all(isinstance(a, SegmentAggregation) for a in self.aggrs):
            return super().forward(x, index, ptr, dim_size, dim)
        return torch.cat([a(x, index, ptr, dim_size, dim)
                          for a in self.aggrs], dim=-1)

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        wanted = [a.statistic for a in self.aggrs
                  if isinstance(a, StatAggregation)]
        stats = segment_stats(x, csr.rowptr, wanted) if wanted else {}
        return torch.cat([
            stats[a.statistic] if isinstance(a, StatAggregation)
            else a.reduce_segments(x, csr) for a in self.aggrs], dim=-1)

    def __repr__(self) -> str:
        inner = ", ".join(repr(a) for a in self.aggrs)
        return f"{self.__class__.__name__}([{inner}], mode={self.mode})"

r"""Several aggregations of the same messages, computed together, and
resolving aggregations by name."""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.aggr import MultiAggregation as PyGMultiAggregation
from torch_geometric.nn.resolver import aggregation_resolver
from torch_geometric.resolver import resolver

from ...ops import CSRGraph, message_stats
from .base import SegmentAggregation
from .basic import StatAggregation


def resolve_aggregation(aggr: Union[str, Aggregation, List],
                        **kwargs) -> Aggregation:
    r"""An aggregation module from its name, as PyG's
    ``aggregation_resolver`` (``"mean"``, ``"add"``, ``"power_mean"``,
    ``"SoftmaxAggregation"``, ...): gnnagg's class where gnnagg has one,
    else PyG's; a list gives a :class:`MultiAggregation`; a module is
    returned as it is."""
    if isinstance(aggr, (list, tuple)):
        return MultiAggregation(list(aggr), **kwargs)
    if not isinstance(aggr, str):
        return aggr
    package = sys.modules[__package__]
    ours = [cls for cls in vars(package).values()
            if isinstance(cls, type) and issubclass(cls, SegmentAggregation)]
    try:
        return resolver(ours, {"add": package.SumAggregation}, aggr,
                        Aggregation, None, **kwargs)
    except ValueError:
        return aggregation_resolver(aggr, **kwargs)


class MultiAggregation(SegmentAggregation, PyGMultiAggregation):
    r"""Combines several aggregations of the same messages, as PyG's
    :class:`~torch_geometric.nn.aggr.MultiAggregation`: concatenated
    (``mode="cat"``), projected (``"proj"``), attention-weighted
    (``"attn"``) or reduced across aggregations (``"sum"``, ``"mean"``,
    ``"max"``, ``"min"``, ``"logsumexp"``, ``"std"``, ``"var"``).

    The messages are grouped by destination once for all aggregations, and
    the statistics among them (sum, mean, min, max, var, std) share two
    fused segment passes of :func:`gnnagg.ops.segment_stats`:
    ``["mean", "min", "max", "std"]`` takes two passes where separate
    aggregations take five. Names resolve to gnnagg's aggregations
    (:func:`resolve_aggregation`); PyG's aggregation modules can be mixed in
    and get the original messages.

    Args:
        aggrs (list): names or :class:`Aggregation` modules.
        aggrs_kwargs (list of dict, optional): constructor arguments for the
            named ones. (default: ``None``)
        mode (str, optional): how results are combined. (default: ``"cat"``)
        mode_kwargs (dict, optional): ``in_channels``, ``out_channels`` and
            ``num_heads`` of the ``"proj"`` and ``"attn"`` modes.
            (default: ``None``)

    Shapes:
        - **input:** messages :math:`(E, F)`, destination index :math:`(E)`
        - **output:** :math:`(N, F')`, :math:`F' = |\mathrm{aggrs}| F` for
          ``"cat"``, ``out_channels`` for ``"proj"``/``"attn"``, else
          :math:`F`

    Example::

        >>> from torch_geometric.nn import SAGEConv
        >>> aggr = MultiAggregation(["mean", "max", "std"])
        >>> conv = SAGEConv(16, 32, aggr=aggr)
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    def __init__(self, aggrs: List[Union[Aggregation, str]],
                 aggrs_kwargs: Optional[List[Dict[str, Any]]] = None,
                 mode: Optional[str] = "cat",
                 mode_kwargs: Optional[Dict[str, Any]] = None):
        if isinstance(aggrs, (list, tuple)) and aggrs and (
                aggrs_kwargs is None or len(aggrs_kwargs) == len(aggrs)):
            aggrs = [resolve_aggregation(aggr, **kwargs) for aggr, kwargs in
                     zip(aggrs, aggrs_kwargs or [{}] * len(aggrs))]
            aggrs_kwargs = None
        PyGMultiAggregation.__init__(self, aggrs, aggrs_kwargs, mode,
                                     mode_kwargs)

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2) -> Tensor:
        if all(isinstance(a, SegmentAggregation) for a in self.aggrs):
            return SegmentAggregation.forward(self, x, index, ptr, dim_size,
                                              dim)
        return self.combine([a(x, index, ptr, dim_size, dim)
                             for a in self.aggrs])

    def combine(self, inputs: List[Tensor]) -> Tensor:
        """PyG's combination of the aggregations' outputs by ``mode``
        (``"sum"``, ``"std"``, ...: that ``torch`` reduction across them)."""
        if len(inputs) == 1 or self.mode in ("cat", "proj", "attn"):
            return PyGMultiAggregation.combine(self, inputs)
        out = getattr(torch, self.mode)(torch.stack(inputs), dim=0)
        return out if isinstance(out, Tensor) else out[0]

    @property
    def reduces_by_index(self) -> bool:  # type: ignore[override]
        return all(getattr(a, "reduces_by_index", False) for a in self.aggrs)

    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        return self._combine_with_shared_stats(
            x, index, num_segments, rowptr,
            lambda a: a.reduce_messages(x, index, num_segments, rowptr))

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        return self._combine_with_shared_stats(
            x, csr.row, csr.num_dst, csr.rowptr,
            lambda a: a.reduce_segments(x, csr))

    def _combine_with_shared_stats(self, x: Tensor, index: Tensor,
                                   num_segments: int,
                                   rowptr: Optional[Tensor],
                                   reduce: Callable[[SegmentAggregation],
                                                    Tensor]) -> Tensor:
        """:meth:`combine` of every aggregation's result: the statistics
        from one :func:`gnnagg.ops.message_stats` call, the others from
        ``reduce(aggregation)``."""
        wanted = [a.statistic for a in self.aggrs
                  if isinstance(a, StatAggregation)]
        stats = (message_stats(x, index, num_segments, wanted, rowptr)
                 if wanted else {})
        return self.combine([
            stats[a.statistic] if isinstance(a, StatAggregation)
            else reduce(a) for a in self.aggrs])

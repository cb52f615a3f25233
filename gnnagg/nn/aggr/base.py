r"""Aggregations that run on messages grouped by destination (CSR order)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ...ops import CSRGraph, csr_from_index


class SegmentAggregation(Aggregation):
    r"""A PyG :class:`~torch_geometric.nn.aggr.Aggregation` that groups the
    messages by destination once and reduces contiguous segments.

    Usable as ``aggr=`` of any :class:`MessagePassing`. Subclasses implement
    :meth:`reduce_segments`; layers that already hold messages in CSR order
    call it directly and skip the grouping.
    """

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2) -> Tensor:
        x = x.movedim(dim, 0)
        csr = csr_from_index(index, dim_size, ptr)
        if ptr is None:
            x = x.index_select(0, csr.perm)
        return self.reduce_segments(x, csr).movedim(0, dim)

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        """Reduce ``x`` (messages in CSR order, dim 0) to one row per
        destination of ``csr``; destinations without messages get 0."""
        raise NotImplementedError

r"""Aggregations that run on messages grouped by destination (CSR order)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ...debug import is_debug_enabled
from ...ops import CSRGraph, csr_from_index
from ...ops.csr import check_index, check_index_range


def require_index(index: Optional[Tensor]) -> None:
    """PyG's rule for aggregations that need ``index`` (not ``ptr``)."""
    if index is None:
        raise NotImplementedError("Aggregation requires 'index' to be "
                                  "specified")


def infer_dim_size(index: Optional[Tensor], ptr: Optional[Tensor],
                   dim_size: Optional[int]) -> int:
    """``dim_size`` as PyG's ``Aggregation.__call__`` infers it (a scripted
    module's call skips ``__call__``)."""
    if dim_size is not None:
        return dim_size
    if ptr is not None:
        return ptr.numel() - 1
    return int(index.max()) + 1 if index is not None and index.numel() else 0


class SegmentAggregation(Aggregation):
    r"""A PyG :class:`~torch_geometric.nn.aggr.Aggregation` on gnnagg's
    reduction operators.

    Usable as ``aggr=`` of any :class:`MessagePassing`. Aggregations that
    reduce messages by destination (:attr:`reduces_by_index`: sum, mean,
    min, max, var, std, softmax, power mean and their combinations)
    implement :meth:`reduce_messages`: unsorted messages are scattered (no
    sort), messages sorted by destination (a ``ptr``, as PyG passes for an
    :class:`EdgeIndex` sorted by destination) reduce contiguous segments.
    The others (tree, recurrent, top-m) implement :meth:`reduce_segments`
    and group the messages by destination first. Layers that already hold
    messages in CSR order call :meth:`reduce_segments` directly.

    No host sync checks ``index`` on success: out-of-range entries fail in
    the scatter kernel, and only then (or under :func:`gnnagg.debug`) is
    the index examined for a clear error. gnnagg's aggregations that carry a
    PyG name also derive from PyG's class of that name (constructor,
    ``repr``, checks and ``isinstance`` are PyG's); only the computation is
    gnnagg's.

    Under ``torch.jit.script`` every method of a subclass stays Python
    (:func:`torch.jit.ignore`): the scripted module runs, as PyG's tests
    ask, but cannot be saved.
    """

    #: whether :meth:`reduce_messages` is implemented
    reduces_by_index: bool = False
    #: class attributes the Python methods read, copied onto a scripted
    #: module (TorchScript keeps only what it knows)
    __constants__ = ["reduces_by_index"]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if callable(value) and not name.startswith("__") and \
                    not isinstance(value, type):
                torch.jit.ignore(value)

    @torch.jit.ignore
    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2) -> Tensor:
        # messages along dim 0 (PyG's default dim=-2 of a matrix is that)
        in_front = dim in (0, -x.dim())
        x = x if in_front else x.movedim(dim, 0)
        dim_size = infer_dim_size(index, ptr, dim_size)
        if ptr is not None or not self.reduces_by_index:
            csr = csr_from_index(index, dim_size, ptr, num_messages=x.size(0))
            out = (self.reduce_segments(x, csr) if ptr is not None
                   else self.reduce_unsorted_segments(x, csr))
            return out if in_front else out.movedim(0, dim)
        index = check_index(index, x.size(0))
        if is_debug_enabled():
            check_index_range(index, dim_size)
        try:
            out = self.reduce_messages(x, index, dim_size)
        except (RuntimeError, IndexError):  # a kernel refused an entry
            check_index_range(index, dim_size)
            raise
        return out if in_front else out.movedim(0, dim)

    @torch.jit.ignore
    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        """Reduce ``x`` (messages, dim 0) by destination ``index`` to
        ``num_segments`` rows (sorted by destination when ``rowptr`` is
        given); destinations without messages get 0."""
        raise NotImplementedError

    @torch.jit.ignore
    def reduce_unsorted_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        """:meth:`reduce_segments` of messages in the caller's order
        (``csr.perm[e]`` is the message in slot ``e``): by default the
        messages are permuted into CSR order first; an aggregation that can
        read them in place overrides this."""
        return self.reduce_segments(x.index_select(0, csr.perm), csr)

    @torch.jit.ignore
    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        """Reduce ``x`` (messages in CSR order, dim 0) to one row per
        destination of ``csr``; destinations without messages get 0."""
        if not self.reduces_by_index:
            raise NotImplementedError
        return self.reduce_messages(x, csr.row, csr.num_dst, csr.rowptr)

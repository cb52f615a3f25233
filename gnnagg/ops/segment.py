r"""Differentiable segment reductions; the feature-wise maximum and minimum
over segments or neighbourhoods split the gradient evenly between ties.

.. math::
    \mathrm{out}_i = \max_{k \in S_i} x_k, \qquad
    \frac{\partial \mathrm{out}_i}{\partial x_k} =
    \frac{[x_k = \mathrm{out}_i]}{|\{l \in S_i : x_l = \mathrm{out}_i\}|}

This is the subgradient of PyG's ``scatter(..., reduce="max")``
(``scatter_reduce``'s ``amax``): the upstream gradient of every output is
shared by all the inputs that reach it, whatever its sign.
``torch.segment_reduce`` gives every tied input the whole gradient when it is
negative, and ``torch.sparse.mm(..., "amax")`` gives it to one of them; both
are wrong or differ from PyG at ties, which integer, one-hot and duplicated
data make common. (PyG's own gradient hands out only half where the maximum
is exactly 0: its zero-initialised output counts as a tie. gnnagg's shares
always sum to the upstream gradient.) The minimum is :math:`-\max(-x)`.
Empty segments give 0.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .backend import native_segment_reduce


class _SegmentMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, rowptr: Tensor, row: Tensor,
                col: Optional[Tensor]) -> Tensor:
        if col is None:
            out = native_segment_reduce(x, rowptr, "max")
        else:
            adjacency = torch.sparse_csr_tensor(
                rowptr, col, x.new_ones(col.numel()),
                (rowptr.numel() - 1, x.size(0)), check_invariants=False)
            out = torch.sparse.mm(adjacency, x.flatten(1), "amax").view(
                (rowptr.numel() - 1,) + x.shape[1:])
        ctx.save_for_backward(x, out, rowptr, row, col)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, out, rowptr, row, col = ctx.saved_tensors
        gathered = x if col is None else x.index_select(0, col)
        winners = gathered == out.index_select(0, row)
        ties = native_segment_reduce(winners.to(grad_out.dtype), rowptr, "sum")
        share = (grad_out / ties.clamp(min=1)).index_select(0, row)
        grad = share.mul_(winners)
        if col is not None:
            grad = x.new_zeros(x.shape).index_add_(0, col, grad)
        return grad, None, None, None


def segment_max(x: Tensor, rowptr: Tensor, row: Tensor,
                col: Optional[Tensor] = None) -> Tensor:
    r"""Feature-wise maximum of every segment, ties sharing the gradient.

    Args:
        x: values; with ``col=None``, ``(E, *F)`` in CSR order (segment
            ``i`` is ``x[rowptr[i]:rowptr[i+1]]``), else ``(N_src, *F)``
            node values, slot ``k`` of the CSR view reading ``x[col[k]]``.
        rowptr: ``(N + 1,)`` segment offsets.
        row: ``(E,)`` segment of every slot.
        col: ``(E,)`` source node of every slot, or None.

    Returns:
        ``(N, *F)``, 0 for empty segments.
    """
    return _SegmentMax.apply(x, rowptr, row, col)


def segment_min(x: Tensor, rowptr: Tensor, row: Tensor,
                col: Optional[Tensor] = None) -> Tensor:
    r""":math:`-\,\mathrm{segment\_max}(-x)`: the minimum, ties sharing the
    gradient (arguments as :func:`segment_max`)."""
    return -_SegmentMax.apply(-x, rowptr, row, col)


def segment_reduce(src: Tensor, rowptr: Tensor, reduce: str) -> Tensor:
    r"""Reduce consecutive segments of ``src`` along dim 0:

    .. math::
        \mathrm{out}_i = \bigoplus_{k=\mathrm{rowptr}_i}^{\mathrm{rowptr}_{i+1}-1}
        \mathrm{src}_k, \qquad \oplus \in \{\sum, \mathrm{mean}, \max,
        \min, \prod\}

    on the kernel :mod:`gnnagg.ops.backend` selects. Empty segments give 0
    (1 for the product). Differentiable; max and min split the gradient
    between ties (:func:`segment_max`).
    """
    if reduce not in ("max", "min"):
        return native_segment_reduce(src, rowptr, reduce)
    row = torch.repeat_interleave(
        torch.arange(rowptr.numel() - 1, device=rowptr.device),
        rowptr.diff(), output_size=src.size(0))
    extreme = segment_max if reduce == "max" else segment_min
    return extreme(src, rowptr, row)

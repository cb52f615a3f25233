r"""Balanced binary-tree reduction of every segment with any binary operator.

For a segment :math:`(x_1, \dots, x_d)` and an operator :math:`\oplus`, one
level pairs neighbours, :math:`(x_1 \oplus x_2, x_3 \oplus x_4, \dots)`,
an odd last element moving up unchanged, until one value is left:
:math:`d - 1` operator applications in :math:`\lceil \log_2 d \rceil`
levels. All segments advance together, so the whole reduction makes one
batched operator call per level, :math:`\lceil \log_2 \max_i d_i \rceil`
calls on :math:`E - N_{\text{non-empty}}` pairs in total, without padding any
segment to the largest one: every level is at most half the size of the
previous, so the tree holds :math:`O(E F)` values. Empty segments get the
operator's identity. Differentiable by autograd; with ``checkpoint_pairs``
the operator runs under activation checkpointing in chunks of that many
pairs, so backward keeps only the tree's levels (about :math:`2 E F`
values) instead of every intermediate of the operator.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch_geometric.utils import cumsum
from torch.utils.checkpoint import checkpoint

BinaryOperator = Callable[[Tensor, Tensor], Tensor]


def _next_level(rowptr: Tensor):
    """For segments ``rowptr`` of the current level: the next level's
    segments, and for each of its slots the left input and whether it is a
    pair (else the carried odd element)."""
    lengths = rowptr.diff()
    next_lengths = (lengths + 1) // 2
    next_rowptr = cumsum(next_lengths)
    segment = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=rowptr.device), next_lengths)
    position = torch.arange(segment.numel(), device=rowptr.device) - \
        next_rowptr[segment]
    left = rowptr[segment] + 2 * position
    is_pair = left + 1 < rowptr[segment + 1]
    return next_rowptr, left, is_pair


def _apply_pairs(op: BinaryOperator, level: Tensor, pairs: Tensor) -> Tensor:
    return op(level.index_select(0, pairs), level.index_select(0, pairs + 1))


def segment_tree_reduce(x: Tensor, rowptr: Tensor, op: BinaryOperator,
                        identity: Tensor,
                        checkpoint_pairs: Optional[int] = None) -> Tensor:
    r"""Reduce every segment ``x[rowptr[i]:rowptr[i+1]]`` (dim 0) with
    ``op`` over a balanced binary tree.

    Args:
        x: ``(E, *F)`` values, grouped by segment (CSR order).
        rowptr: ``(N + 1,)`` segment offsets.
        op: batched binary operator, ``op(a, b)`` on two ``(P, *F)``
            tensors returning ``(P, *F)``.
        identity: ``(*F)`` value of empty segments.
        checkpoint_pairs: if given, apply ``op`` under activation
            checkpointing, at most this many pairs per call (recomputed in
            backward: less memory, about one more forward pass of time).

    Returns:
        ``(N, *F)``. For an associative and commutative ``op`` this equals
        the plain reduction (sum, max, log-sum-exp, ...).
    """
    num_segments = rowptr.numel() - 1
    if identity.shape != x.shape[1:]:
        raise ValueError(f"identity has shape {tuple(identity.shape)}, "
                         f"expected {tuple(x.shape[1:])}")
    nonempty = rowptr.diff() > 0
    level_ptr = cumsum(rowptr.diff()[nonempty])
    level = x
    while level.size(0) > level_ptr.numel() - 1:
        level_ptr, left, is_pair = _next_level(level_ptr)
        pairs = left[is_pair]
        if checkpoint_pairs is None or not torch.is_grad_enabled():
            combined = _apply_pairs(op, level, pairs)
        else:
            combined = torch.cat([
                checkpoint(_apply_pairs, op, level, chunk,
                           use_reentrant=False)
                for chunk in pairs.split(checkpoint_pairs)])
        level = level.index_select(0, left).index_put(
            (is_pair.nonzero().view(-1),), combined)
    out = identity.expand((num_segments,) + tuple(x.shape[1:]))
    return out.index_put((nonempty.nonzero().view(-1),), level)

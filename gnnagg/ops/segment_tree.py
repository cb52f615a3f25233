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

from typing import Callable, List, Optional, Tuple

import torch
import torch._dynamo
from torch import Tensor
from torch_geometric.utils import cumsum
from torch.utils.checkpoint import checkpoint

BinaryOperator = Callable[[Tensor, Tensor], Tensor]
#: one level of the tree: for each slot of the next level its left input
#: (``left``), the next-level slots that combine a pair (``pair_slots``)
#: and those pairs' left inputs (``pairs``; the right ones are ``pairs + 1``)
Level = Tuple[Tensor, Tensor, Tensor]


def _next_level(rowptr: Tensor) -> Tuple[Tensor, Level]:
    """For segments ``rowptr`` of the current level: the next level's
    segments and the :data:`Level` that builds it."""
    lengths = rowptr.diff()
    next_lengths = (lengths + 1) // 2
    next_rowptr = cumsum(next_lengths)
    segment = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=rowptr.device), next_lengths)
    position = torch.arange(segment.numel(), device=rowptr.device) - \
        next_rowptr[segment]
    left = rowptr[segment] + 2 * position
    is_pair = left + 1 < rowptr[segment + 1]
    pair_slots = is_pair.nonzero().view(-1)
    return next_rowptr, (left, pair_slots, left.index_select(0, pair_slots))


def _root_slots(rowptr: Tensor, level_ptr: Tensor) -> Tensor:
    """Each segment's slot in the last level (``level_ptr``); for an empty
    segment ``level_ptr[-1]``, one past the level, where the identity
    goes."""
    return torch.where(rowptr.diff() > 0, level_ptr[:-1], level_ptr[-1])


@torch.compiler.disable
def _levels_until_reduced(rowptr: Tensor) -> Tuple[List[Level], Tensor]:
    r"""The levels until every segment holds one slot, and the root slots.
    Their number is data (:math:`\lceil \log_2 \max_i d_i \rceil`): under
    ``torch.compile`` this is one graph break, after which the levels are
    the traced graph's inputs."""
    levels: List[Level] = []
    level_ptr = rowptr
    size, roots = int(rowptr[-1]), int((rowptr.diff() > 0).sum())
    while size > roots:
        level_ptr, level = _next_level(level_ptr)
        levels.append(level)
        size = level[0].numel()
    return levels, _root_slots(rowptr, level_ptr)


def _levels_for_any_segment(rowptr: Tensor, num_messages: int
                            ) -> Tuple[List[Level], Tensor]:
    """As :func:`_levels_until_reduced`, traceable: as many levels as a
    segment of all ``num_messages`` would need (the levels past the largest
    segment's pair nothing), sized by data-dependent operators that
    ``torch.compile`` traces under ``capture_dynamic_output_shape_ops``."""
    levels: List[Level] = []
    level_ptr = rowptr
    for _ in range(max(num_messages - 1, 0).bit_length()):
        level_ptr, level = _next_level(level_ptr)
        levels.append(level)
    return levels, _root_slots(rowptr, level_ptr)


def _apply_pairs(op: BinaryOperator, level: Tensor, pairs: Tensor) -> Tensor:
    return op(level.index_select(0, pairs), level.index_select(0, pairs + 1))


def segment_tree_reduce(x: Tensor, rowptr: Tensor, op: BinaryOperator,
                        identity: Tensor,
                        checkpoint_pairs: Optional[int] = None) -> Tensor:
    r"""Reduce every segment ``x[rowptr[i]:rowptr[i+1]]`` (dim 0) with
    ``op`` over a balanced binary tree.

    Under ``torch.compile`` with
    ``torch._dynamo.config.capture_dynamic_output_shape_ops`` (which
    ``fullgraph=True`` needs here, as for PyG's and gnnagg's GAT) the tree
    traces whole, with :math:`\lceil \log_2 E \rceil` levels; without
    it, the levels are built behind one graph break.

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
    if identity.shape != x.shape[1:]:
        raise ValueError(f"identity has shape {tuple(identity.shape)}, "
                         f"expected {tuple(x.shape[1:])}")
    if torch.compiler.is_compiling() and \
            torch._dynamo.config.capture_dynamic_output_shape_ops:
        levels, roots = _levels_for_any_segment(rowptr, int(x.size(0)))
    else:
        levels, roots = _levels_until_reduced(rowptr)
    level = x
    for left, pair_slots, pairs in levels:
        if checkpoint_pairs is None or not torch.is_grad_enabled():
            combined = _apply_pairs(op, level, pairs)
        else:
            combined = torch.cat([
                checkpoint(_apply_pairs, op, level, chunk,
                           use_reentrant=False)
                for chunk in pairs.split(checkpoint_pairs)])
        level = level.index_select(0, left).index_put((pair_slots,),
                                                      combined)
    return torch.cat([level, identity.unsqueeze(0)]).index_select(0, roots)

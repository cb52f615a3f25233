r"""Reductions of messages by destination, as custom operators.

.. math::
    \mathrm{out}_i = \bigoplus_{k :\, \mathrm{index}_k = i} \mathrm{src}_k,
    \qquad \oplus \in \{\sum, \mathrm{mean}, \max, \min\}

``torch.ops.gnnagg.reduce`` reduces messages given the destination of each;
``torch.ops.gnnagg.moments`` (:func:`message_moments`) gives their mean and
variance together, :math:`\mu_i = \tfrac{1}{d_i}\sum_k x_k` and
:math:`v_i = \tfrac{1}{d_i}\sum_k x_k^2 - \mu_i^2`, with one backward pass
over the messages for both,
:math:`\partial/\partial x_k = \tfrac{1}{d_i}\big(g^\mu_i + 2 g^v_i (x_k -
\mu_i)\big)`;
when they are also sorted by destination (a CSR ``rowptr``), or grouped
by it (a ``rowptr`` and the ``perm`` that lists each segment's messages),
the CPU runs the native segment reduction (sparse products with reduction
for float values; or torch-scatter, :mod:`gnnagg.ops.backend`),
otherwise, and on every other device, a scatter. ``gather_reduce`` reduces
node values over each node's in-neighbours (slot ``k`` reads ``x[col[k]]``)
without forming the gathered ``E x F`` tensor on the CPU (sparse-matrix
reductions); ``gather_extremes`` (:func:`gather_extremes`) gives the
maximum and the minimum together, with one backward pass over the
neighbour rows for both, and ``gather_moments`` (:func:`gather_moments`)
the mean and the variance (or PyG's std) of neighbour values. Empty
destinations give 0.

Maxima and minima split the gradient evenly between tied inputs, whatever
its sign:

.. math::
    \frac{\partial \mathrm{out}_i}{\partial x_k} =
    \frac{[x_k = \mathrm{out}_i]}{|\{l : \mathrm{index}_l = i,\ x_l =
    \mathrm{out}_i\}|}

the subgradient of PyG's scatter (``scatter_reduce``'s ``amax``).
``torch.segment_reduce`` gives every tie the whole gradient when it is
negative, ``torch.sparse.mm(..., "amax")`` gives it to one of them. (PyG's
own gradient hands out only half where the maximum is exactly 0: its
zero-initialised output counts as a tie. gnnagg's shares always sum to the
upstream gradient.)
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .backend import SPARSE_REDUCE, native_segment_reduce
from .csr import (index_counts, message_grouping, reduce_rows, segment_ids,
                  selection_matrix, sum_by_source)
from .library import (backward_kernel, call_operator, chunk_length,
                      dispatch_free, eager_function, generic_forced,
                      recorded_gradients, records_grad)
from .scratch import scratch

REDUCTIONS = ("sum", "mean", "max", "min")
#: Variances at or below this are treated as zero by ``std`` (as PyG's
#: ``StdAggregation``), which keeps its gradient finite at zero variance.
STD_EPS = 1e-5
#: message elements up to which a sum scatters with ``scatter_add`` (its
#: backward, a gather, is the faster one on small inputs: 0.86x the time of
#: ``index_add`` forward+backward on 128 molecules); above, ``index_add``
#: (0.84x ``scatter_add``'s at ogbn-arxiv scale)
SMALL_SCATTER = 1 << 22


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduce!r}; choose one of "
                         f"{REDUCTIONS}")


def _broadcast(index: Tensor, like: Tensor) -> Tensor:
    return index.view((-1,) + (1,) * (like.dim() - 1)).expand_as(like)


def message_counts(index: Tensor, num_segments: int,
                   rowptr: Optional[Tensor] = None,
                   dtype: torch.dtype = torch.long) -> Tensor:
    """Messages per destination: ``rowptr``'s differences for sorted
    messages, else counted from ``index`` (no host sync)."""
    if rowptr is not None:
        return rowptr.diff().to(dtype)
    return index_counts(index, num_segments, dtype)


def _counts(index: Tensor, rowptr: Optional[Tensor], num_segments: int,
            dtype: torch.dtype) -> Tensor:
    """Messages per destination, at least 1 (the divisor of a mean)."""
    return message_counts(index, num_segments, rowptr, dtype).clamp_(min=1)


def _add_into(out: Tensor, index: Tensor, src: Tensor) -> Tensor:
    """``out[index[k]] += src[k]``, by the faster scatter for the size."""
    if src.numel() <= SMALL_SCATTER:
        return out.scatter_add_(0, _broadcast(index, src), src)
    return out.index_add_(0, index, src)


def _scatter(src: Tensor, index: Tensor, num_segments: int,
             reduce: str) -> Tensor:
    """The device-generic reduction: one scatter."""
    out = src.new_zeros((num_segments,) + tuple(src.shape[1:]))
    if reduce in ("sum", "mean"):
        _add_into(out, index, src)
        if reduce == "mean":
            counts = _counts(index, None, num_segments, src.dtype)
            out = out / counts.view((-1,) + (1,) * (src.dim() - 1))
        return out
    return out.scatter_reduce_(0, _broadcast(index, src), src,
                               "amax" if reduce == "max" else "amin",
                               include_self=False)


@torch.library.custom_op("gnnagg::reduce", mutates_args=())
def _reduce(src: Tensor, index: Tensor, rowptr: Optional[Tensor],
            perm: Optional[Tensor], num_segments: int, reduce: str) -> Tensor:
    return _scatter(src, index, num_segments, reduce)


@_reduce.register_kernel("cpu")
def _reduce_cpu(src, index, rowptr, perm, num_segments, reduce):
    if rowptr is None or generic_forced():
        return _scatter(src, index, num_segments, reduce)
    return native_segment_reduce(src, rowptr, reduce, perm)


@_reduce.register_fake
def _reduce_fake(src, index, rowptr, perm, num_segments, reduce):
    return src.new_empty((num_segments,) + tuple(src.shape[1:]))


def _share(grad: Tensor, src: Tensor, out: Tensor, index: Tensor,
           rowptr: Optional[Tensor], perm: Optional[Tensor],
           num_segments: int, reduce: str) -> Tensor:
    """The gradient of every message (gathered form, one row per index)."""
    if reduce == "sum":
        return grad.index_select(0, index)
    if reduce == "mean":
        counts = _counts(index, rowptr, num_segments, grad.dtype)
        return (grad / counts.view((-1,) + (1,) * (grad.dim() - 1))) \
            .index_select(0, index)
    # 1 where a message holds its extreme, written over the gathered
    # extremes: two message-sized tensors in all (fresh memory costs more
    # than the comparison on small graphs); piecewise constant, no gradient
    winners = out.detach().index_select(0, index)
    torch.eq(src.detach(), winners, out=winners)
    ties = _reduce(winners, index, rowptr, perm, num_segments, "sum")
    return (grad / ties.clamp_(min=1)).index_select(0, index).mul_(winners)


def _reduce_setup(ctx, inputs, output):
    src, index, rowptr, perm, num_segments, reduce = inputs
    ctx.num_segments, ctx.reduce = num_segments, reduce
    extremes = reduce in ("max", "min")
    ctx.save_for_backward(src if extremes else None, index, rowptr,
                          perm if extremes else None,
                          output if extremes else None)


def _reduce_backward(ctx, grad):
    src, index, rowptr, perm, out = ctx.saved_tensors
    return (_share(grad, src, out, index, rowptr, perm, ctx.num_segments,
                   ctx.reduce), None, None, None, None, None)


_reduce.register_autograd(_reduce_backward, setup_context=_reduce_setup)
#: ``gnnagg::reduce`` past the dispatcher
_ReduceFunction = eager_function("_ReduceFunction", _reduce_cpu,
                                 _reduce_setup, _reduce_backward)


def moments_of_sums(total: Tensor, square_total: Tensor,
                    counts: Tensor) -> List[Tensor]:
    """Mean and variance from the sums of the values and of their squares
    and the counts clamped to at least 1 (floating point, also for integer
    values, as PyG's), rounded as PyG's
    ``mean(x * x) - mean(x) ** 2`` (an ``addcmul`` would not round the
    square: half-precision variances near 0 would differ from PyG's)."""
    counts = counts.view((-1,) + (1,) * (total.dim() - 1))
    mean = total / counts
    return [mean, (square_total / counts).sub_(mean * mean)]


def _in_dtype(value: float, dtype: torch.dtype) -> Tensor:
    """``value`` rounded to ``dtype``, as a 0-d tensor."""
    return torch.tensor(value, dtype=dtype)


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: :math:`\sqrt{\epsilon}` (:data:`STD_EPS`) rounded to each dtype:
#: ``torch.threshold`` at it zeroes exactly what PyG's
#: ``std.masked_fill(std <= math.sqrt(STD_EPS), 0.0)`` zeroes, whose
#: comparison rounds the bound to the tensor's dtype (the threshold compares
#: half precision in float32). Constants, so that tracing reads no tensor.
STD_FLOOR = {dtype: _in_dtype(math.sqrt(STD_EPS), dtype).item()
             for dtype in _FLOATS}
#: the larger of that and a clamped variance's square root in the dtype:
#: every std whose gradient PyG's floor or clamp stops
_STD_GRADIENT_LIMIT = {
    dtype: max(STD_FLOOR[dtype], _in_dtype(STD_EPS, dtype).sqrt().item())
    for dtype in _FLOATS}


def floored_std(variance: Tensor, inplace: bool = True) -> Tensor:
    r"""PyG's standard deviation from a variance (in place unless
    ``inplace=False``, then differentiable by autograd):
    :math:`\sqrt{\max(v, \epsilon)}`, 0 where that is at most
    :math:`\sqrt{\epsilon}` (:data:`STD_EPS`). A threshold, not a masked
    fill: boolean masks of node-sized tensors cost 3-10x a float pass on
    the CPU (a PNA step on ogbg-molhiv spent 8% of its time on them)."""
    if inplace:
        std = variance.clamp_(min=STD_EPS).sqrt_()
        return torch.threshold_(std, STD_FLOOR[std.dtype], 0.0)
    std = variance.clamp(min=STD_EPS).sqrt()
    return torch.threshold(std, STD_FLOOR[std.dtype], 0.0)


def _std_slope_offset(grad_std: Tensor, std: Tensor, mean: Tensor,
                      counts: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Per destination, the slope :math:`s = g / (\sigma d)` and offset
    :math:`o = -s \mu` of the gradient of :func:`floored_std`'s output,
    :math:`\partial \sigma_i / \partial x_k = x_k s_i + o_i`: 0 where the
    std was floored or the variance clamped, as in PyG's autograd (and
    differentiable again: no division by 0). A clamped variance shows as
    :math:`\sigma = \sqrt{\epsilon}` rounded to the dtype, which need not
    fall under the floor (half precision); a variance of exactly
    :math:`\epsilon`, whose gradient PyG's clamp passes, gets 0 as well."""
    # floored entries divide by infinity: a slope of 0 (NaN only for a
    # non-finite upstream gradient there, which PyG's masked fill zeroes)
    limit = _STD_GRADIENT_LIMIT[std.dtype]
    denominator = torch.threshold(std, limit, math.inf).mul_(counts)
    slope = grad_std / denominator
    return slope, (slope * mean).neg_()


def _spread(moments: List[Tensor], std: bool) -> List[Tensor]:
    """``[mean, variance]``, or ``[mean, std]`` with ``std``."""
    return [moments[0], floored_std(moments[1])] if std else moments


def _scattered_moments(src: Tensor, index: Tensor,
                       num_segments: int) -> List[Tensor]:
    """The device-generic moments: two scatters."""
    shape = (num_segments,) + tuple(src.shape[1:])
    return moments_of_sums(
        _add_into(src.new_zeros(shape), index, src),
        _add_into(src.new_zeros(shape), index, src * src),
        _counts(index, None, num_segments, src.dtype))


@torch.library.custom_op("gnnagg::moments", mutates_args=())
def _moments(src: Tensor, index: Tensor, rowptr: Optional[Tensor],
             perm: Optional[Tensor], num_segments: int,
             std: bool) -> List[Tensor]:
    return _spread(_scattered_moments(src, index, num_segments), std)


@_moments.register_kernel("cpu")
def _moments_cpu(src, index, rowptr, perm, num_segments, std):
    if rowptr is None or generic_forced():
        return _spread(_scattered_moments(src, index, num_segments), std)
    return _spread(moments_of_sums(
        native_segment_reduce(src, rowptr, "sum", perm),
        native_segment_reduce(src * src, rowptr, "sum", perm),
        _counts(index, rowptr, num_segments, src.dtype)), std)


@_moments.register_fake
def _moments_fake(src, index, rowptr, perm, num_segments, std):
    shape = (num_segments,) + tuple(src.shape[1:])
    return [src.new_empty(shape), src.new_empty(shape)]


def _moments_setup(ctx, inputs, output):
    src, index, rowptr, _, num_segments, std = inputs
    ctx.num_segments, ctx.std = num_segments, std
    ctx.set_materialize_grads(False)  # no zero gradient of an unused moment
    ctx.save_for_backward(src, index, rowptr, *output)


def _variance_slope_offset(grad_variance: Tensor, mean: Tensor,
                           counts: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Per destination, the slope :math:`s = 2 g^v / d` and offset
    :math:`o = -2 g^v \mu / d` of the variance's gradient
    :math:`\partial v_i / \partial x_k = x_k s_i + o_i`."""
    return ((grad_variance / counts).mul_(2),
            (grad_variance * mean).mul_(-2).div_(counts))


def _spread_slope_offset(grad_spread: Tensor, spread: Tensor, mean: Tensor,
                         counts: Tensor, std: bool) -> Tuple[Tensor, Tensor]:
    """The slope and offset of the variance's gradient, or of the std's
    with ``std``."""
    if std:
        return _std_slope_offset(grad_spread, spread, mean, counts)
    return _variance_slope_offset(grad_spread, mean, counts)


def _moments_backward(ctx, grads):
    r""":math:`x_k s_i + o_i (+ g^\mu_i / d_i)`
    (:func:`_spread_slope_offset`), for the variance rounded as the
    autograd of PyG's ``mean(x * x) - mean(x) ** 2`` rounds it (the two
    terms that cancel added first), so that half-precision gradients agree
    with PyG's."""
    if grads[0] is None and grads[1] is None:
        return None, None, None, None, None, None
    src, index, rowptr, mean, spread = ctx.saved_tensors
    grad_mean, grad_spread = grads
    counts = _counts(index, rowptr, ctx.num_segments, src.dtype).view(
        (-1,) + (1,) * (src.dim() - 1))
    grad_src = None
    if grad_spread is not None:
        slope, offset = _spread_slope_offset(grad_spread, spread, mean,
                                             counts, ctx.std)
        grad_src = slope.index_select(0, index).mul_(src).add_(
            offset.index_select(0, index))
    if grad_mean is not None:
        share = (grad_mean / counts).index_select(0, index)
        grad_src = share if grad_src is None else grad_src.add_(share)
    return grad_src, None, None, None, None, None


_moments.register_autograd(_moments_backward, setup_context=_moments_setup)
#: ``gnnagg::moments`` past the dispatcher
_MomentsFunction = eager_function("_MomentsFunction", _moments_cpu,
                                  _moments_setup, _moments_backward,
                                  returns_list=True)


#: slots of one chunk of the neighbour reductions' backward pass on the CPU
#: (:func:`~gnnagg.ops.library.chunk_length` scales it for other devices)
CHUNK_SLOTS = 1 << 15


def _gathered_reduce(x: Tensor, col: Tensor, index: Tensor,
                     num_segments: int, reduce: str) -> Tensor:
    """The device-generic gather-reduce."""
    return _scatter(x.index_select(0, col), index, num_segments, reduce)


@torch.library.custom_op("gnnagg::gather_reduce", mutates_args=())
def _gather_reduce(x: Tensor, col: Tensor, index: Tensor,
                   rowptr: Optional[Tensor], rowptr_t: Optional[Tensor],
                   col_t: Optional[Tensor], slot_t: Optional[Tensor],
                   num_segments: int, reduce: str) -> Tensor:
    return _gathered_reduce(x, col, index, num_segments, reduce)


@_gather_reduce.register_kernel("cpu")
def _gather_reduce_cpu(x, col, index, rowptr, rowptr_t, col_t, slot_t,
                       num_segments, reduce):
    if rowptr is None or generic_forced():
        return _gathered_reduce(x, col, index, num_segments, reduce)
    adjacency = selection_matrix(rowptr, col, x.size(0), x)
    out = reduce_rows(adjacency, x, SPARSE_REDUCE[reduce])
    if reduce == "mean":
        out = out / _counts(index, rowptr, num_segments, x.dtype).view(
            (-1,) + (1,) * (x.dim() - 1))
    return out


@_gather_reduce.register_fake
def _gather_reduce_fake(x, col, index, rowptr, rowptr_t, col_t, slot_t,
                        num_segments, reduce):
    return x.new_empty((num_segments,) + tuple(x.shape[1:]))


@torch.library.custom_op("gnnagg::gather_reduce_backward", mutates_args=())
def _gather_reduce_backward(grad: Tensor, x: Tensor, out: Tensor,
                            col: Tensor, index: Tensor,
                            rowptr: Optional[Tensor],
                            rowptr_t: Optional[Tensor],
                            col_t: Optional[Tensor],
                            slot_t: Optional[Tensor],
                            reduce: str) -> Tensor:
    return _gather_reduce_grad(grad, x, out, col, index, rowptr, rowptr_t,
                               col_t, slot_t, reduce)


def _gather_reduce_grad(grad: Tensor, x: Tensor, out: Tensor, col: Tensor,
                        index: Tensor, rowptr: Optional[Tensor],
                        rowptr_t: Optional[Tensor], col_t: Optional[Tensor],
                        slot_t: Optional[Tensor], reduce: str) -> Tensor:
    """The gradient of ``x``: for sum and mean the transposed product
    (on the CPU with the transpose, ``rowptr_t``/``col_t``), for max and
    min the tie shares (:func:`_extremes_backward`; ``"extremes"``: both,
    stacked, from :func:`gather_extremes` on the dispatcher)."""
    num_segments = grad.size(0)
    trailing = (1,) * (grad.dim() - 1)
    if reduce in ("sum", "mean"):
        if reduce == "mean":
            grad = grad / _counts(index, rowptr, num_segments,
                                  grad.dtype).view((-1,) + trailing)
        if rowptr_t is not None and col_t is not None and \
                x.device.type == "cpu" and not generic_forced():
            adjacency_t = selection_matrix(rowptr_t, col_t, num_segments,
                                           grad)
            return reduce_rows(adjacency_t, grad, "sum")
        grad_x = torch.zeros_like(x)
        step = chunk_length(CHUNK_SLOTS, x.device)
        for start in range(0, col.numel(), step):
            part = slice(start, start + step)
            grad_x.index_add_(0, col[part], grad.index_select(0,
                                                              index[part]))
        return grad_x
    by_source = _by_source(x, rowptr, rowptr_t, slot_t)
    if reduce == "extremes":  # gather_extremes' on the dispatcher: stacked
        return _extremes_backward(grad.unbind(0), x, out.unbind(0), col,
                                  index, by_source)
    return _extremes_backward([grad], x, [out], col, index, by_source)


def _by_source(x: Tensor, rowptr: Optional[Tensor],
               rowptr_t: Optional[Tensor], slot_t: Optional[Tensor]
               ) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
    """``(rowptr, rowptr_t, slot_t)`` where the CPU's max/min backward can
    sum by source with sparse products, else None."""
    if rowptr is not None and rowptr_t is not None and slot_t is not None \
            and x.device.type == "cpu" and not generic_forced():
        return rowptr, rowptr_t, slot_t
    return None


def _extremes_backward(grad: Sequence[Tensor], x: Tensor,
                       out: Sequence[Tensor], col: Tensor, index: Tensor,
                       by_source: Optional[Tuple[Tensor, Tensor, Tensor]]
                       = None) -> Tensor:
    """The gradient of ``x`` from ``K`` extremes of its gathered values,
    ``out`` and ``grad`` ``K`` tensors of shape ``(N, *F)`` each, ties
    sharing it evenly.
    Each chunk of neighbour rows is gathered once for all ``K``.

    Slots that fit one chunk count their ties, then share. On the CPU,
    with the slots sorted by destination and grouped by source
    (``by_source``: ``rowptr`` and the transpose's ``rowptr_t, slot_t``),
    both steps are sparse products, a segment sum of the winners and a sum
    of the shares by source, in place of zero-filled ``index_add``
    targets: 0.7x the time on the molecule batch. Larger inputs take one
    pass over the chunks that gives every winner (a slot holding its
    segment's extreme) the whole gradient and counts each segment's
    winners over all ``K`` and ``F``: a segment without ties or NaN has
    exactly ``K F``. A second pass, over the other segments only (rare in
    real-valued data), counts their ties per extreme and feature and takes
    back all but each tie's share. Counting per segment, not per feature,
    takes 0.75x the time at ogbn-arxiv scale."""
    def winners(slots: Union[slice, Tensor]) -> Tuple[List[Tensor], Tensor]:
        """Per extreme, 1 where a slot holds it, else 0; and a spare buffer
        of their shape. Each comparison is written over one of its own
        inputs: K + 1 slot-sized tensors for K extremes, not 2K + 2, all
        scratch buffers (on the molecule batch, fresh memory to fault in
        costs more than the comparisons)."""
        columns = col[slots]
        shape = (columns.numel(),) + tuple(x.shape[1:])
        gathered = torch.index_select(
            x, 0, columns, out=scratch("extremes-gathered", shape, x))
        segments = index[slots]
        won = []
        for k, extreme in enumerate(out):
            at_slots = torch.index_select(
                extreme, 0, segments,
                out=scratch(f"extremes-{k}", shape, x))
            last = k == len(out) - 1  # the gathered values are done with
            won.append(torch.eq(gathered, at_slots,
                                out=gathered if last else at_slots))
        return won, at_slots

    def count_ties(won: List[Tensor], segments: Tensor,
                   ties: List[Tensor]) -> None:
        for tie_count, won_k in zip(ties, won):
            tie_count.index_add_(0, segments, won_k)

    def add_shares(slots: Union[slice, Tensor], won: List[Tensor],
                   spare: Tensor, per_segment: Sequence[Tensor],
                   segments: Tensor) -> None:
        shares = won[0].mul_(torch.index_select(per_segment[0], 0, segments,
                                                out=spare))
        for won_k, share in zip(won[1:], per_segment[1:]):
            shares.addcmul_(won_k, torch.index_select(share, 0, segments,
                                                      out=spare))
        grad_x.index_add_(0, col[slots], shares.to(grad_x.dtype))

    step = chunk_length(CHUNK_SLOTS, x.device)
    if col.numel() <= step and by_source is not None:
        return _sorted_extremes_backward(grad, x, winners(slice(None)),
                                         index, *by_source)
    # accumulated in float32 at least: the passes below add whole shares
    # and take back the excess, which half precision would round
    grad_x = torch.zeros(x.shape, dtype=torch.promote_types(
        x.dtype, torch.float32), device=x.device)
    if col.numel() <= step:
        won, spare = winners(slice(None))
        ties = [torch.zeros_like(grad_k) for grad_k in grad]
        count_ties(won, index, ties)
        add_shares(slice(None), won, spare,
                   [g / t.clamp_(min=1) for g, t in zip(grad, ties)], index)
        return grad_x.to(x.dtype)
    # counts exact in any dtype: per slot in float32 (or float64) at least,
    # per segment as integers
    slot_dtype = torch.promote_types(grad[0].dtype, torch.float32)
    winner_totals = index.new_zeros(out[0].size(0), dtype=torch.long)
    for start in range(0, col.numel(), step):
        slots = slice(start, start + step)
        won, spare = winners(slots)
        for won_k in won:
            winner_totals.index_add_(0, index[slots], won_k.view(
                won_k.size(0), -1).sum(1, dtype=slot_dtype).long())
        add_shares(slots, won, spare, grad, index[slots])
    # a NaN extreme has no winner: with a tie elsewhere, its segment's
    # total would still be K F; the feature sums flag it (and +-inf mixes)
    nan_extreme = torch.stack([extreme.reshape(extreme.size(0), -1).sum(1)
                               for extreme in out]).isnan().any(0)
    tied = (winner_totals != len(out) * math.prod(out[0].shape[1:])) | \
        nan_extreme
    tied_slots = tied.index_select(0, index).nonzero().view(-1)
    if tied_slots.numel() > 0:  # a host sync, in backward only
        tied_segments = tied.nonzero().view(-1)
        compact = torch.searchsorted(tied_segments, index[tied_slots])
        ties = [g.new_zeros((tied_segments.numel(),) + tuple(g.shape[1:]))
                for g in grad]
        for start in range(0, tied_slots.numel(), step):
            part = slice(start, start + step)
            count_ties(winners(tied_slots[part])[0], compact[part], ties)
        excess = [g.index_select(0, tied_segments) *
                  (t.clamp_(min=1).reciprocal_() - 1)
                  for g, t in zip(grad, ties)]
        for start in range(0, tied_slots.numel(), step):
            part = slice(start, start + step)
            add_shares(tied_slots[part], *winners(tied_slots[part]), excess,
                       compact[part])
    return grad_x.to(x.dtype)


def _sorted_extremes_backward(grad: Sequence[Tensor], x: Tensor,
                              winners: Tuple[List[Tensor], Tensor],
                              index: Tensor, rowptr: Tensor, rowptr_t: Tensor,
                              slot_t: Tensor) -> Tensor:
    r""":func:`_extremes_backward` of slots sorted by destination
    (``rowptr``) and grouped by source (``rowptr_t``, ``slot_t``), from
    the winners of every extreme and a spare slot-sized buffer: per extreme
    :math:`g_i / \mathrm{ties}_i` sent to its winners, ties a segment sum,
    and :math:`\partial x_j = \sum_{k \to j} \mathrm{share}_k` a product
    with the ``N_src x E`` matrix selecting each source's slots."""
    won, spare = winners
    for won_k, grad_k in zip(won, grad):
        ties = native_segment_reduce(won_k, rowptr, "sum")
        per_segment = torch.div(grad_k, ties.clamp_(min=1), out=ties)
        won_k.mul_(torch.index_select(per_segment, 0, index, out=spare))
    shares = won[0]
    for won_k in won[1:]:
        shares.add_(won_k)
    return sum_by_source(shares, rowptr_t, slot_t)


@_gather_reduce_backward.register_fake
def _gather_reduce_backward_fake(grad, x, out, col, index, rowptr, rowptr_t,
                                 col_t, slot_t, reduce):
    return torch.empty_like(x)


def _gather_reduce_setup(ctx, inputs, output):
    x, col, index, rowptr, rowptr_t, col_t, slot_t, num_segments, reduce = \
        inputs
    ctx.reduce = reduce
    extremes = reduce in ("max", "min")
    ctx.save_for_backward(x if extremes else None, col, index, rowptr,
                          rowptr_t, col_t, slot_t,
                          output if extremes else None)
    ctx.x_shape = x.shape


def _gather_reduce_autograd(ctx, grad):
    x, col, index, rowptr, rowptr_t, col_t, slot_t, out = ctx.saved_tensors
    if torch.is_grad_enabled():  # recorded: a double backward
        # sum and mean keep no x: their gradient is the same at any x
        x = grad.new_zeros(ctx.x_shape).requires_grad_() if x is None \
            else x
        num_segments = grad.size(-x.dim())
        grad_x, = recorded_gradients(
            lambda v: _gathered_reduce(v, col, index, num_segments,
                                       ctx.reduce), (x,), (True,), grad)
        return (grad_x,) + (None,) * 8
    if x is None:  # sum and mean read neither x nor the output
        x = out = grad.new_empty(ctx.x_shape)
    backward = backward_kernel(_gather_reduce_grad, _gather_reduce_backward,
                               grad)
    grad_x = backward(grad, x, out, col, index, rowptr,
                      rowptr_t, col_t, slot_t, ctx.reduce)
    return (grad_x,) + (None,) * 8


_gather_reduce.register_autograd(_gather_reduce_autograd,
                                 setup_context=_gather_reduce_setup)


#: ``gnnagg::gather_reduce`` past the dispatcher
_GatherReduceFunction = eager_function(
    "_GatherReduceFunction", _gather_reduce_cpu, _gather_reduce_setup,
    _gather_reduce_autograd)


def _gathered_extremes(x: Tensor, col: Tensor, index: Tensor,
                       num_segments: int) -> List[Tensor]:
    """The device-generic maximum and minimum of the gathered rows."""
    gathered = x.index_select(0, col)
    return [_scatter(gathered, index, num_segments, how)
            for how in ("max", "min")]


@torch.library.custom_op("gnnagg::gather_extremes", mutates_args=())
def _gather_extremes(x: Tensor, col: Tensor, index: Tensor,
                     rowptr: Optional[Tensor], rowptr_t: Optional[Tensor],
                     slot_t: Optional[Tensor],
                     num_segments: int) -> List[Tensor]:
    return _gathered_extremes(x, col, index, num_segments)


@_gather_extremes.register_kernel("cpu")
def _gather_extremes_cpu(x, col, index, rowptr, rowptr_t, slot_t,
                         num_segments):
    if rowptr is None or generic_forced():
        return _gathered_extremes(x, col, index, num_segments)
    adjacency = selection_matrix(rowptr, col, x.size(0), x)
    return [reduce_rows(adjacency, x, how) for how in ("amax", "amin")]


@_gather_extremes.register_fake
def _gather_extremes_fake(x, col, index, rowptr, rowptr_t, slot_t,
                          num_segments):
    shape = (num_segments,) + tuple(x.shape[1:])
    return [x.new_empty(shape), x.new_empty(shape)]


def _gather_extremes_setup(ctx, inputs, output):
    x, col, index, rowptr, rowptr_t, slot_t, _ = inputs
    ctx.set_materialize_grads(False)  # no zero gradient of an unused one
    ctx.save_for_backward(x, col, index, rowptr, rowptr_t, slot_t, *output)


def _gather_extremes_backward(ctx, grads):
    """Both extremes' tie shares from one pass over the neighbour rows
    (:func:`_extremes_backward`), their gradients taken as they come: no
    stacked copy of them or of the outputs on a dispatch-free call."""
    x, col, index, rowptr, rowptr_t, slot_t, *outputs = ctx.saved_tensors
    used = [k for k, g in enumerate(grads) if g is not None]
    if not used:
        return (None,) * 7
    grad = [grads[k] for k in used]
    out = [outputs[k] for k in used]
    if torch.is_grad_enabled():  # recorded: a double backward
        grad_x, = recorded_gradients(
            lambda v: torch.stack([_gathered_extremes(
                v, col, index, out[0].size(0))[k] for k in used]),
            (x,), (True,), torch.stack(grad))
        return (grad_x,) + (None,) * 6
    if dispatch_free(grad[0]):
        return (_extremes_backward(grad, x, out, col, index,
                                   _by_source(x, rowptr, rowptr_t, slot_t)),
                ) + (None,) * 6
    grad_x = _gather_reduce_backward(torch.stack(grad), x, torch.stack(out),
                                     col, index, rowptr, rowptr_t, None,
                                     slot_t, "extremes")
    return (grad_x,) + (None,) * 6


_gather_extremes.register_autograd(_gather_extremes_backward,
                                   setup_context=_gather_extremes_setup)
#: ``gnnagg::gather_extremes`` past the dispatcher
_GatherExtremesFunction = eager_function(
    "_GatherExtremesFunction", _gather_extremes_cpu, _gather_extremes_setup,
    _gather_extremes_backward, returns_list=True)


def _gathered_moments(x: Tensor, col: Tensor, index: Tensor,
                      rowptr: Optional[Tensor], num_segments: int,
                      std: bool) -> List[Tensor]:
    """Mean and variance of the gathered ``x[col]`` by ``index``: on the
    CPU with sorted slots two sparse sums (of ``x`` and ``x * x``), no
    ``E x F`` tensor; else the generic scatters of the gathered rows."""
    if rowptr is None or generic_forced():
        return _spread(_scattered_moments(x.index_select(0, col), index,
                                          num_segments), std)
    adjacency = selection_matrix(rowptr, col, x.size(0), x)
    return _spread(moments_of_sums(
        reduce_rows(adjacency, x, "sum"),
        reduce_rows(adjacency, x * x, "sum"),
        _counts(index, rowptr, num_segments, x.dtype)), std)


@torch.library.custom_op("gnnagg::gather_moments", mutates_args=())
def _gather_moments(x: Tensor, col: Tensor, index: Tensor,
                    rowptr: Optional[Tensor], rowptr_t: Optional[Tensor],
                    col_t: Optional[Tensor], num_segments: int,
                    std: bool) -> List[Tensor]:
    return _gathered_moments(x, col, index, None, num_segments, std)


@_gather_moments.register_kernel("cpu")
def _gather_moments_cpu(x, col, index, rowptr, rowptr_t, col_t,
                        num_segments, std):
    return _gathered_moments(x, col, index, rowptr, num_segments, std)


@_gather_moments.register_fake
def _gather_moments_fake(x, col, index, rowptr, rowptr_t, col_t,
                         num_segments, std):
    shape = (num_segments,) + tuple(x.shape[1:])
    return [x.new_empty(shape), x.new_empty(shape)]


def _gather_moments_setup(ctx, inputs, output):
    x, col, index, rowptr, rowptr_t, col_t, num_segments, ctx.std = inputs
    ctx.set_materialize_grads(False)  # no zero gradient of an unused moment
    ctx.save_for_backward(x, col, index, rowptr, rowptr_t, col_t, *output)


def _gather_moments_backward(ctx, grads):
    r""":math:`\partial x_j = x_j \odot (A^\top s)_j + (A^\top (o +
    g^\mu / d))_j` (:func:`_spread_slope_offset`), :math:`A^\top` the
    backward of a neighbour sum (one transposed product on the CPU): two
    node-sized products, no ``E x F`` tensor. A recorded backward (double
    backward) takes the scatters, which autograd differentiates."""
    if grads[0] is None and grads[1] is None:
        return (None,) * 8
    x, col, index, rowptr, rowptr_t, col_t, mean, spread = ctx.saved_tensors
    grad_mean, grad_spread = grads
    if torch.is_grad_enabled():  # recorded: the differentiable scatters
        transposed, rowptr_t, col_t = _gather_reduce_grad, None, None
    else:
        transposed = backward_kernel(_gather_reduce_grad,
                                     _gather_reduce_backward, mean)
    counts = _counts(index, rowptr, mean.size(0), x.dtype).view(
        (-1,) + (1,) * (x.dim() - 1))

    def to_sources(per_segment: Tensor) -> Tensor:
        return transposed(per_segment, x, per_segment, col, index, rowptr,
                          rowptr_t, col_t, None, "sum")

    offset = None
    grad_x = None
    if grad_spread is not None:
        slope, offset = _spread_slope_offset(grad_spread, spread, mean,
                                             counts, ctx.std)
        grad_x = to_sources(slope) * x
    if grad_mean is not None:
        share = grad_mean / counts
        offset = share if offset is None else offset.add_(share)
    assert offset is not None
    moved = to_sources(offset)
    grad_x = moved if grad_x is None else grad_x + moved
    return (grad_x,) + (None,) * 7


_gather_moments.register_autograd(_gather_moments_backward,
                                  setup_context=_gather_moments_setup)
#: ``gnnagg::gather_moments`` past the dispatcher
_GatherMomentsFunction = eager_function(
    "_GatherMomentsFunction", _gather_moments_cpu, _gather_moments_setup,
    _gather_moments_backward, returns_list=True)


def _gather_reduce_call(x: Tensor, col: Tensor, index: Tensor,
                        rowptr: Optional[Tensor], rowptr_t: Optional[Tensor],
                        col_t: Optional[Tensor], slot_t: Optional[Tensor],
                        num_segments: int, reduce: str) -> Tensor:
    """``gnnagg::gather_reduce``, eager CPU calls past the dispatcher."""
    return call_operator(_gather_reduce, _GatherReduceFunction, x, col,
                         index, rowptr, rowptr_t, col_t, slot_t, num_segments,
                         reduce)


def reduce_messages(src: Tensor, index: Tensor, num_segments: int,
                    reduce: str, rowptr: Optional[Tensor] = None) -> Tensor:
    r"""Reduce the messages ``src`` (``(E, *F)``) by destination ``index``
    (``(E,)``) into ``(num_segments, *F)``; with ``rowptr`` the messages are
    sorted by destination (``index`` is then the CSR ``row``) and the CPU
    reduces contiguous segments. Differentiable; max and min split the
    gradient between ties.

    Unsorted float CPU messages are reduced in place by their index's
    cached grouping (:func:`~gnnagg.ops.csr.message_grouping`: one sort per
    graph), a sparse product that reads each message where it lies. Other
    unsorted messages that record no gradient, and sums and means of up to
    ``SMALL_SCATTER`` unsorted elements, run PyTorch's own scatter (what the
    operator's generic implementation runs) outside the operator: its
    C++ autograd costs less per call than a Python-registered one, which
    matters on small graphs. Sorted (or grouped) messages that record no
    gradient, in an eager CPU call, run the operator's CPU kernel directly
    (the softmax operator's reductions: 12-15 us a call less than through
    an autograd Function that records nothing). Everything else goes through the
    operator (eager CPU calls past the dispatcher), whose backward keeps only
    ``index`` for sums and means (the autograd of ``index_add_``, the
    larger inputs' scatter, would keep all of ``src``)."""
    _check_reduce(reduce)
    rowptr, perm = _grouping(src, index, num_segments, rowptr)
    if rowptr is None and (not records_grad(src) or (
            reduce in ("sum", "mean") and src.numel() <= SMALL_SCATTER)):
        return _scatter(src, index, num_segments, reduce)
    if not records_grad(src) and dispatch_free(src):
        return _reduce_cpu(src, index, rowptr, perm, num_segments, reduce)
    return call_operator(_reduce, _ReduceFunction, src, index, rowptr, perm,
                         num_segments, reduce)


def _grouping(src: Tensor, index: Tensor, num_segments: int,
              rowptr: Optional[Tensor]
              ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(rowptr, perm)`` for the reduction operators: the caller's
    ``rowptr`` of sorted messages (no ``perm``), else the cached grouping
    of unsorted float32/float64 CPU messages (the sparse product's types;
    :func:`~gnnagg.ops.csr.message_grouping`) in an eager call
    (:func:`~gnnagg.ops.library.dispatch_free`), else neither (a
    scatter)."""
    if rowptr is not None or not dispatch_free(src) or \
            src.dtype not in (torch.float32, torch.float64):
        return rowptr, None
    grouping = message_grouping(index, num_segments)
    return (None, None) if grouping is None else grouping


def message_moments(src: Tensor, index: Tensor, num_segments: int,
                    rowptr: Optional[Tensor] = None,
                    std: bool = False) -> Tuple[Tensor, Tensor]:
    r"""The mean and the variance :math:`\tfrac{1}{d_i}\sum_k x_k^2 -
    \mu_i^2` of the messages ``src`` by destination ``index`` (arguments as
    :func:`reduce_messages`), each ``(num_segments, *F)``, 0 for empty
    destinations. The variance is not floored: rounding can leave it
    slightly below 0. With ``std``, PyG's standard deviation
    (:func:`floored_std`) in its place, its gradient folded into the
    operator's backward. One operator gives both; its backward makes two
    ``E x F`` tensors, where the autograd of two sums makes five."""
    rowptr, perm = _grouping(src, index, num_segments, rowptr)
    if rowptr is None and not records_grad(src):
        mean, spread = _spread(_scattered_moments(src, index, num_segments),
                               std)
    else:
        mean, spread = call_operator(_moments, _MomentsFunction, src, index,
                                     rowptr, perm, num_segments, std)
    return mean, spread


def segment_reduce(src: Tensor, rowptr: Tensor, reduce: str) -> Tensor:
    r"""Reduce consecutive segments ``src[rowptr[i]:rowptr[i+1]]`` (dim 0):
    :func:`reduce_messages` for messages sorted by destination."""
    if reduce == "prod":  # MulAggregation's; PyTorch's autograd is exact
        return native_segment_reduce(src, rowptr, "prod")
    return reduce_messages(src, segment_ids(rowptr, src.size(0)),
                           rowptr.numel() - 1, reduce, rowptr)


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
    if col is None:
        return _reduce(x, row, rowptr, None, rowptr.numel() - 1, "max")
    return _gather_reduce_call(x, col, row, rowptr, None, None, None,
                               rowptr.numel() - 1, "max")


def segment_min(x: Tensor, rowptr: Tensor, row: Tensor,
                col: Optional[Tensor] = None) -> Tensor:
    r"""The minimum, ties sharing the gradient (arguments as
    :func:`segment_max`)."""
    if col is None:
        return _reduce(x, row, rowptr, None, rowptr.numel() - 1, "min")
    return _gather_reduce_call(x, col, row, rowptr, None, None, None,
                               rowptr.numel() - 1, "min")


def gather_reduce(x: Tensor, col: Tensor, index: Tensor, num_segments: int,
                  reduce: str, rowptr: Optional[Tensor] = None,
                  transpose: Optional[Tuple[Tensor, Tensor, Tensor]] = None
                  ) -> Tensor:
    r""":func:`reduce_messages` of the gathered ``x[col]`` (node values over
    each node's in-neighbours), without forming it on the CPU when the
    slots are sorted (``rowptr``). ``transpose`` (``rowptr_t, col_t,
    slot_t``: the slots grouped by source, :attr:`CSRGraph.transpose`) lets
    the CPU's backward of sum and mean be one transposed sparse product, and
    that of max and min sum the shares by source with a sparse product;
    without it, or above one chunk of slots, max and min go through the
    slots in chunks."""
    _check_reduce(reduce)
    rowptr_t, col_t, slot_t = transpose or (None, None, None)
    return _gather_reduce_call(x, col, index, rowptr, rowptr_t, col_t,
                               slot_t, num_segments, reduce)


def gather_moments(x: Tensor, col: Tensor, index: Tensor, num_segments: int,
                   rowptr: Optional[Tensor] = None,
                   transpose: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
                   std: bool = False) -> Tuple[Tensor, Tensor]:
    r"""The mean and the (unfloored) variance, or with ``std`` PyG's
    standard deviation, of the gathered ``x[col]`` by ``index`` (as
    :func:`message_moments`; arguments as :func:`gather_reduce`), from one
    operator whose backward sends both gradients to the sources with two
    node-sized transposed products."""
    rowptr_t, col_t, _ = transpose or (None, None, None)
    mean, spread = call_operator(_gather_moments, _GatherMomentsFunction, x,
                                 col, index, rowptr, rowptr_t, col_t,
                                 num_segments, std)
    return mean, spread


def gather_extremes(x: Tensor, col: Tensor, index: Tensor, num_segments: int,
                    rowptr: Optional[Tensor] = None,
                    transpose: Optional[Tuple[Tensor, Tensor, Tensor]] = None
                    ) -> Tuple[Tensor, Tensor]:
    r"""The maximum and the minimum of the gathered ``x[col]`` by ``index``
    (as :func:`gather_reduce`), from one operator,
    ``gnnagg::gather_extremes``, whose backward gathers the neighbour rows
    once for both and sums both shares by source in one product. It
    returns the two apart, and its backward takes their gradients apart:
    nothing is stacked either way (a PNA epoch on ogbg-molhiv: 0.96x the
    time of one stacked output, which took 0.97x that of two operators)."""
    rowptr_t, _, slot_t = transpose or (None, None, None)
    maximum, minimum = call_operator(_gather_extremes,
                                     _GatherExtremesFunction, x, col, index,
                                     rowptr, rowptr_t, slot_t, num_segments)
    return maximum, minimum

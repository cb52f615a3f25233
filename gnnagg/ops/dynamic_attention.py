r"""GATv2's dynamic attention score, computed in edge chunks.

.. math::
    e_{ji,h} = \mathbf{a}_h^\top \mathrm{LeakyReLU}\big(\mathbf{x}^{src}_{j,h}
    + \mathbf{x}^{dst}_{i,h} + (\mathbf{W}_e \mathbf{e}_{ji})_h\big)

The pre-activation is ``E x H x C``; the forward pass forms it one chunk of
edges at a time and keeps nothing of that size for backward, which recomputes
it chunk by chunk. The edge projection :math:`\mathbf{W}_e \mathbf{e}_{ji}` is
also formed per chunk, so only ``E x H`` scores and the inputs stay alive.
Graphs whose whole pre-activation fits in one chunk skip the recomputation:
the forward pass keeps its LeakyReLU (which gives the derivative's sign for
a non-negative slope), at most one chunk; on the CPU their backward sums the
derivative by destination and by source with two sparse products (the
segments' and the transpose's 0/1 matrices) into reused buffers, in place
of two zero-filled ``index_add_`` (a GATv2Conv step on 128 molecules 7-11%
faster). Forward and backward are the
custom operators ``torch.ops.gnnagg.gatv2_score`` and
``gatv2_score_backward`` (every device; under ``torch.autocast`` they run
in the autocast dtype, as a matmul).
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .csr import (CSRGraph, one_hot_matrix, reduce_rows, selection_matrix,
                  sum_by_source)
from .library import (backward_kernel, call_operator, chunk_length,
                      eager_function, recorded_gradients, records_grad)
from .scratch import scratch
from .spmm import _use_sparse

#: Elements of one chunk's ``E_chunk x H x C`` pre-activation on the CPU
#: (:func:`~gnnagg.ops.library.chunk_length` scales it for other devices).
CHUNK_ELEMENTS = 1 << 21


def _preactivation_chunks(x_src, x_dst, edge_attr, edge_weight, col, row,
                          buffer: Tensor):
    """Yield ``(part, s)``: the pre-activation ``s`` of the edges in the slice
    ``part``, chunk after chunk of ``len(buffer)`` edges, formed in
    ``buffer``, which every chunk reuses (the caller may overwrite it).

    On the CPU the destination term is added in place as a sparse product,
    ``s += P x_dst`` with ``P`` the chunk's ``E_chunk x N_dst`` selection
    matrix, and the edge term by ``addmm_``: no gathered copy of ``x_dst``
    (on 128 molecules the chunk took 186 instead of 324 us, and the
    copy's fresh pages cost up to 1.7 ms more where the heap had been
    trimmed)."""
    num_edges = col.numel()
    step = max(1, buffer.size(0))
    # gathered as rows of H C values: on small graphs, two-threaded
    # index_select took 5 times longer on (E, H, C) tensors than on their
    # (E, H C) views
    flat_src, flat_dst = x_src.flatten(1), x_dst.flatten(1)
    in_place = _use_sparse(flat_dst)
    addend = None if in_place else torch.empty_like(buffer)
    for start in range(0, num_edges, step):
        part = slice(start, min(start + step, num_edges))
        count = part.stop - start
        s = buffer[:count]
        rows = s.view(count, -1)
        torch.index_select(flat_src, 0, col[part], out=rows)
        if addend is None:
            gather = one_hot_matrix(row[part], flat_dst.size(0), flat_dst)
            torch.addmm(rows, gather, flat_dst, out=rows)
        else:
            rows += torch.index_select(flat_dst, 0, row[part],
                                       out=addend[:count].view(count, -1))
        if edge_attr is not None:
            rows.addmm_(edge_attr[part], edge_weight.t())
        yield part, s


def _chunk_buffer(x_src: Tensor, num_edges: int) -> Tensor:
    """One chunk's pre-activation, a scratch buffer (nothing returned or
    saved lives in it)."""
    step = min(num_edges, chunk_length(CHUNK_ELEMENTS, x_src.device) //
               max(1, x_src[0].numel()))
    return scratch("gatv2-preactivation",
                   (max(1, step),) + tuple(x_src.shape[1:]), x_src)


def _per_head(att: Tensor) -> Tensor:
    """``(H, C)`` -> the ``(H C, H)`` block-diagonal matrix that maps a row
    of ``H x C`` values to its ``H`` per-head dot products with ``att``:
    one dense product instead of a batched one over strided heads. It is
    the transpose of a contiguous ``(H, H C)`` matrix: MKL multiplies by a
    narrow matrix so laid out 3-4 times faster than by a row-major one."""
    heads = att.size(0)
    eye = torch.eye(heads, dtype=att.dtype, device=att.device)
    return (eye.unsqueeze(-1) * att.unsqueeze(0)).reshape(
        heads, att.numel()).t()


def _gatv2_score_kernel(x_src: Tensor, x_dst: Tensor, att: Tensor,
                        col: Tensor, row: Tensor, rowptr: Optional[Tensor],
                        rowptr_t: Optional[Tensor], slot_t: Optional[Tensor],
                        edge_attr: Optional[Tensor],
                        edge_weight: Optional[Tensor], negative_slope: float,
                        keep: bool) -> List[Tensor]:
    """``[scores, activated]``: ``activated`` is the whole ``E x H x C``
    LeakyReLU of the pre-activation with ``keep`` (for backward), else
    empty. ``rowptr`` and the transpose's ``rowptr_t, slot_t`` are for the
    backward only (:func:`_gatv2_score_grads`)."""
    scores = x_src.new_empty(col.numel(), att.size(0))
    per_head = _per_head(att)
    buffer = (x_src.new_empty((col.numel(),) + tuple(x_src.shape[1:]))
              if keep else _chunk_buffer(x_src, col.numel()))
    for part, s in _preactivation_chunks(x_src, x_dst, edge_attr,
                                         edge_weight, col, row, buffer):
        torch.mm(F.leaky_relu_(s, negative_slope).view(s.size(0), -1),
                 per_head, out=scores[part])
    return [scores, buffer if keep else x_src.new_empty(0)]


_gatv2_score = torch.library.custom_op("gnnagg::gatv2_score",
                                       _gatv2_score_kernel, mutates_args=())


@_gatv2_score.register_fake
def _gatv2_score_fake(x_src, x_dst, att, col, row, rowptr, rowptr_t, slot_t,
                      edge_attr, edge_weight, negative_slope, keep):
    num_edges = col.shape[0]
    return [x_src.new_empty(num_edges, att.shape[0]),
            x_src.new_empty((num_edges,) + tuple(x_src.shape[1:])) if keep
            else x_src.new_empty(0)]


def _gatv2_score_grads(grad_scores: Tensor, x_src: Tensor, x_dst: Tensor,
                       att: Tensor, col: Tensor, row: Tensor,
                       rowptr: Optional[Tensor], rowptr_t: Optional[Tensor],
                       slot_t: Optional[Tensor],
                       edge_attr: Optional[Tensor],
                       edge_weight: Optional[Tensor],
                       activated: Optional[Tensor],
                       negative_slope: float) -> List[Tensor]:
    r"""Gradients of ``x_src, x_dst, att, edge_attr, edge_weight`` (the last
    two empty without edge features), from the sums of

    .. math::
        \mathbf{q}_{e,h} = g_{e,h} \, \mathrm{LeakyReLU}'(\mathbf{s}_{e,h})

    by source and by destination, :math:`\mathbf{Q}^{src}_j` and
    :math:`\mathbf{Q}^{dst}_i`: the node gradients are
    :math:`\mathbf{a} \odot \mathbf{Q}`, and since
    :math:`\mathrm{LeakyReLU}(s) = s \, \mathrm{LeakyReLU}'(s)` and
    :math:`\mathbf{s}_e = \mathbf{x}^{src}_j + \mathbf{x}^{dst}_i +
    \mathbf{W}_e \mathbf{e}_e`,

    .. math::
        \nabla \mathbf{a} = \sum_e \mathbf{q}_e \odot \mathbf{s}_e
        = \sum_j \mathbf{x}^{src}_j \odot \mathbf{Q}^{src}_j
        + \sum_i \mathbf{x}^{dst}_i \odot \mathbf{Q}^{dst}_i
        + \Big(\mathbf{W}_e \odot \sum_e \mathbf{q}_e
        \mathbf{e}_e^\top\Big) \mathbf{1}

    (products over nodes, not edges). The one ``E x H x C`` pass is
    :math:`\mathbf{q}`: from the sign of the forward pass's ``activated``
    where it kept it, else of the pre-activation recomputed one chunk of
    edges at a time. With ``activated`` and the graph's structure
    (``rowptr``, ``rowptr_t``, ``slot_t``) on the CPU, :math:`\mathbf{Q}`
    comes from sparse products with the segments' ``N_dst x E`` 0/1 matrix
    and the transpose's ``N_src x E`` slot selection, written over reused
    buffers, else from ``index_add_`` chunk by chunk."""
    width = att.numel()
    flat_att = att.reshape(width)
    sum_src = scratch("gatv2-source-sums", (x_src.size(0), width), x_src)
    sum_dst = scratch("gatv2-destination-sums", (x_dst.size(0), width),
                      x_dst)
    # the structure whose products give Q (the forward pass kept the one
    # chunk), else None: index_add_ into zeroed sums
    products = None
    if activated is not None and rowptr is not None and \
            rowptr_t is not None and slot_t is not None and \
            _use_sparse(activated):
        products = (rowptr, rowptr_t, slot_t)
    else:
        sum_src.zero_()
        sum_dst.zero_()
    edge_features = edge_attr if edge_weight is not None else None
    # with edge features: sum_e q_e e_e^T, and W_e's rows scaled by a
    # (the gradient of e_e is q_e^T of that)
    edge_moments = scaled_weight = None
    if edge_features is not None and edge_weight is not None:
        edge_moments = att.new_zeros(width, edge_features.size(1))
        scaled_weight = flat_att.unsqueeze(1) * edge_weight
    grad_edge_attr = (x_src.new_empty(0) if edge_features is None
                      else torch.empty_like(edge_features))
    buffer: Optional[Tensor] = None  # the first chunk is the largest

    def accumulate(part: slice, s: Tensor, s_is_activated: bool) -> None:
        nonlocal buffer
        count = s.size(0)
        if buffer is None:
            buffer = scratch("gatv2-derivative", s.shape, s)
        q = buffer[:count]
        torch.ops.aten.leaky_relu_backward.grad_input(
            grad_scores[part].unsqueeze(-1).expand(s.shape), s,
            negative_slope, s_is_activated, grad_input=q)
        q = q.view(count, width)
        if products is not None:
            segments_ptr, source_ptr, source_slots = products
            reduce_rows(selection_matrix(segments_ptr, None, count, q), q,
                        "sum", out=sum_dst)
            sum_by_source(q, source_ptr, source_slots, out=sum_src)
        else:
            sum_src.index_add_(0, col[part], q)
            sum_dst.index_add_(0, row[part], q)
        if edge_features is not None and edge_moments is not None and \
                scaled_weight is not None:
            torch.mm(q, scaled_weight, out=grad_edge_attr[part])
            edge_moments.addmm_(q.t(), edge_features[part])

    if activated is not None:
        accumulate(slice(None), activated, True)
    else:
        for part, s in _preactivation_chunks(
                x_src, x_dst, edge_attr, edge_weight, col, row,
                _chunk_buffer(x_src, col.numel())):
            accumulate(part, s, False)
    grad_src = torch.mul(sum_src, flat_att).view_as(x_src)
    grad_dst = torch.mul(sum_dst, flat_att).view_as(x_dst)
    # the sums are scratch: multiplied in place by the features
    grad_att = sum_src.mul_(x_src.reshape(-1, width)).sum(0)
    grad_att += sum_dst.mul_(x_dst.reshape(-1, width)).sum(0)
    grad_edge_weight = x_src.new_empty(0)
    if edge_moments is not None and edge_weight is not None:
        grad_att += (edge_weight * edge_moments).sum(1)
        grad_edge_weight = edge_moments.mul_(flat_att.unsqueeze(1))
    return [grad_src, grad_dst, grad_att.view_as(att), grad_edge_attr,
            grad_edge_weight]


_gatv2_score_backward = torch.library.custom_op(
    "gnnagg::gatv2_score_backward", _gatv2_score_grads, mutates_args=())


@_gatv2_score_backward.register_fake
def _gatv2_score_backward_fake(grad_scores, x_src, x_dst, att, col, row,
                               rowptr, rowptr_t, slot_t, edge_attr,
                               edge_weight, activated, negative_slope):
    with_edges = edge_attr is not None and edge_weight is not None
    return [torch.empty_like(x_src), torch.empty_like(x_dst),
            torch.empty_like(att),
            torch.empty_like(edge_attr) if with_edges else x_src.new_empty(0),
            torch.empty_like(edge_weight) if with_edges
            else x_src.new_empty(0)]


def _setup(ctx, inputs, output):
    *tensors, negative_slope, keep = inputs
    ctx.negative_slope = negative_slope
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no zero-filled E x H x C gradient
    ctx.save_for_backward(*tensors, output[1] if keep else None)


def _composite_scores(x_src: Tensor, x_dst: Tensor, att: Tensor,
                      col: Tensor, row: Tensor, edge_attr: Optional[Tensor],
                      edge_weight: Optional[Tensor],
                      negative_slope: float) -> Tensor:
    """The scores in PyTorch's differentiable operations, whole (what a
    recorded backward differentiates)."""
    s = x_src.index_select(0, col) + x_dst.index_select(0, row)
    if edge_attr is not None and edge_weight is not None:
        s = s + (edge_attr @ edge_weight.t()).view_as(s)
    return (F.leaky_relu(s, negative_slope) * att).sum(-1)


def _backward(ctx, grads_out):
    grad_scores = grads_out[0]  # the kept activation is internal
    if grad_scores is None:
        return (None,) * 12
    x_src, x_dst, att, col, row, rowptr, rowptr_t, slot_t, edge_attr, \
        edge_weight, activated = ctx.saved_tensors
    structure = (None,) * 5  # col, row, rowptr, rowptr_t, slot_t
    if torch.is_grad_enabled():  # recorded: a double backward
        needs = ctx.needs_input_grad
        grads = recorded_gradients(
            lambda *t: _composite_scores(t[0], t[1], t[2], col, row, t[3],
                                         t[4], ctx.negative_slope),
            (x_src, x_dst, att, edge_attr, edge_weight),
            needs[:3] + needs[8:10], grad_scores)
        return (*grads[:3], *structure, *grads[3:], None, None)
    backward = backward_kernel(_gatv2_score_grads, _gatv2_score_backward,
                               grad_scores)
    grads = backward(grad_scores, x_src, x_dst, att, col, row, rowptr,
                     rowptr_t, slot_t, edge_attr, edge_weight, activated,
                     ctx.negative_slope)
    if edge_attr is None:
        grads[3] = grads[4] = None
    return (*grads[:3], *structure, *grads[3:], None, None)


_gatv2_score.register_autograd(_backward, setup_context=_setup)
torch.library.register_autocast("gnnagg::gatv2_score", "cpu", torch.bfloat16)
torch.library.register_autocast("gnnagg::gatv2_score", "cuda", torch.float16)
#: ``gnnagg::gatv2_score`` past the dispatcher
_Gatv2ScoreFunction = eager_function("_Gatv2ScoreFunction",
                                     _gatv2_score_kernel, _setup, _backward,
                                     returns_list=True, autocast=True)


def gatv2_score(x_src: Tensor, x_dst: Tensor, att: Tensor, csr: CSRGraph,
                negative_slope: float = 0.2, edge_attr: Optional[Tensor] = None,
                edge_weight: Optional[Tensor] = None) -> Tensor:
    r"""Per-edge, per-head GATv2 scores in CSR order, shape ``(E, H)``.

    Args:
        x_src: ``(N_src, H, C)`` source projections :math:`\mathbf{x}^{src}`.
        x_dst: ``(N_dst, H, C)`` destination projections.
        att: ``(H, C)`` attention vectors :math:`\mathbf{a}_h`.
        csr: the graph's CSR view.
        negative_slope: LeakyReLU slope.
        edge_attr: optional ``(E, D)`` edge features in CSR order.
        edge_weight: ``(H * C, D)`` projection :math:`\mathbf{W}_e`, with
            ``edge_attr``.
    """
    heads, channels = att.shape
    if x_src.shape[1:] != (heads, channels) or x_dst.shape[1:] != (heads,
                                                                    channels):
        raise ValueError(f"expected node projections of shape (N, {heads}, "
                         f"{channels}), got {tuple(x_src.shape)} and "
                         f"{tuple(x_dst.shape)}")
    if (edge_attr is None) != (edge_weight is None):
        raise ValueError("edge_attr and edge_weight go together")
    if edge_attr is not None and edge_attr.size(0) != csr.num_edges:
        raise ValueError(f"expected {csr.num_edges} edge feature rows, got "
                         f"{edge_attr.size(0)}")
    # one chunk's worth is kept for backward, whose LeakyReLU derivative it
    # determines where the slope is not negative
    keep = csr.num_edges * heads * channels <= CHUNK_ELEMENTS and \
        negative_slope >= 0
    # the backward's sums by sparse products (one chunk, on the CPU) need
    # the transpose, built once per graph where gradients are wanted
    rowptr_t = slot_t = None
    if keep and _use_sparse(x_src) and \
            any(records_grad(t) for t in (x_src, x_dst, att)):
        rowptr_t, _, slot_t = csr.transpose
    return call_operator(_gatv2_score, _Gatv2ScoreFunction, x_src, x_dst,
                         att, csr.col, csr.row, csr.rowptr, rowptr_t, slot_t,
                         edge_attr, edge_weight, float(negative_slope),
                         keep)[0]

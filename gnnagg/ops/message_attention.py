r"""Attention over the messages themselves, as the custom operator
``torch.ops.gnnagg.message_attention`` (TANGNN's top-m selection per node):

.. math::
    s_{e,h} = \frac{\mathbf{x}_e^\top \mathbf{a}_h}{\lVert \mathbf{x}_e
    \rVert}, \qquad
    \alpha_{e,h} = \operatorname{softmax}_{e \in \mathcal{N}(i),\,
    \mathrm{keep}_{e,h}}(t_h s_{e,h}), \qquad
    \mathbf{out}_{i,h} = \sum_{e \in \mathcal{N}(i)} \alpha_{e,h}
    \mathbf{x}_e

for messages :math:`\mathbf{x}` already grouped by destination (CSR order),
unit auxiliary vectors :math:`\mathbf{a}_h` and a mask of the kept messages.
Forward and backward touch the ``E x F`` messages a few times per head and
allocate one ``E x F`` tensor, the gradient of :math:`\mathbf{x}`, whose
three terms (through the weighted sum, the norm and the dot product) are
accumulated in place:

.. math::
    \frac{\partial L}{\partial \mathbf{x}_e} = \sum_h \alpha_{e,h}
    \mathbf{g}_{i,h} + \sum_h \frac{\delta_{e,h}}{\lVert \mathbf{x}_e
    \rVert} \mathbf{a}_h - \Big(\sum_h \frac{\delta_{e,h}
    s_{e,h}}{\lVert \mathbf{x}_e \rVert^2}\Big) \mathbf{x}_e

with :math:`\delta = t \cdot \mathrm{softmax}'` the gradient of the scores.
No ``E x H x F`` tensor is formed. On the CPU (float32/float64) the forward
weighted sums are sparse products; the device-generic implementation
scatters.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from .csr import csr_matrix, sparse_product
from .library import recorded_gradients
from .segment import reduce_messages
from .softmax import _softmax, message_softmax
from .spmm import _use_sparse

def _row_dots(a: Tensor, b: Tensor, chunk: int = 1 << 15) -> Tensor:
    """``(a * b).sum(-1)`` for ``(E, F)`` tensors, in chunks of rows, so no
    ``E x F`` product is held."""
    out = a.new_empty(a.size(0))
    for start in range(0, a.size(0), chunk):
        out[start:start + chunk] = (a[start:start + chunk] *
                                    b[start:start + chunk]).sum(-1)
    return out


def _scores(x: Tensor, aux: Tensor) -> List[Tensor]:
    """``[scores (E, H), norms (E, 1)]``: cosine similarities without a
    normalised copy of ``x`` (norms below 1e-12 count as 1e-12)."""
    norms = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return [(x @ aux.t()).div_(norms), norms]


def _attend(x: Tensor, aux: Tensor, t: Tensor, keep: Optional[Tensor],
            rowptr: Tensor, row: Tensor, col: Tensor,
            sparse: bool) -> List[Tensor]:
    """``[out, alpha, scores, norms]``: the weighted sums by sparse products
    into fresh outputs (``sparse``, the CPU kernel; autograd does not
    record them), or else by ``index_add`` after the softmax operator,
    which autograd differentiates (the generic implementation, and what a
    double backward differentiates)."""
    num_dst, heads = rowptr.numel() - 1, aux.size(0)
    scores, norms = _scores(x, aux)  # in the messages' order
    logits = scores.index_select(0, col) * t  # in slot order
    if keep is not None:
        logits.masked_fill_(~keep, float("-inf"))
    if not x.size(0):
        alpha = logits.clone()
    elif sparse:
        alpha = _softmax(logits, row, rowptr, num_dst)
    else:
        alpha = message_softmax(logits, row, num_dst, rowptr)
    out = x.new_zeros(num_dst, heads, x.size(1))
    if sparse:
        for h in range(heads):
            adj = csr_matrix(rowptr, col, alpha[:, h].contiguous(),
                             (num_dst, x.size(0)))
            out[:, h] = sparse_product(adj, x)
    else:
        rows = x.index_select(0, col)
        for h in range(heads):
            out[:, h].index_add_(0, row, alpha[:, h, None] * rows)
    return [out, alpha, scores, norms]


@torch.library.custom_op("gnnagg::message_attention", mutates_args=())
def _message_attention(x: Tensor, aux: Tensor, t: Tensor,
                       keep: Optional[Tensor], rowptr: Tensor, row: Tensor,
                       col: Tensor) -> List[Tensor]:
    return _attend(x, aux, t, keep, rowptr, row, col, _use_sparse(x))


@_message_attention.register_fake
def _fake(x, aux, t, keep, rowptr, row, col):
    num_dst, heads = rowptr.numel() - 1, aux.size(0)
    return [x.new_empty(num_dst, heads, x.size(1)),
            x.new_empty(x.size(0), heads), x.new_empty(x.size(0), heads),
            x.new_empty(x.size(0), 1)]


@torch.library.custom_op("gnnagg::message_attention_backward",
                         mutates_args=())
def _message_attention_backward(grad_out: Tensor, x: Tensor, aux: Tensor,
                                t: Tensor, alpha: Tensor, scores: Tensor,
                                norms: Tensor, rowptr: Tensor, row: Tensor,
                                col: Tensor) -> List[Tensor]:
    """``[grad_x, grad_aux, grad_t]``. The ``E x F`` work runs in the
    messages' order (``x``'s), the softmax's in slot order."""
    num_dst, heads = rowptr.numel() - 1, aux.size(0)
    position = torch.empty_like(col)  # the slot of every message
    position[col] = torch.arange(col.numel(), device=col.device)
    destination = row.index_select(0, position)
    weights = alpha.index_select(0, position)
    # per head: the output gradients gathered to the messages give both
    # d L / d alpha (row dot products) and the weighted-sum part of d L / d x
    grad_weights = weights.new_empty(weights.shape)
    grad_x = grad_out[:, 0].index_select(0, destination)
    grad_weights[:, 0] = _row_dots(grad_x, x)
    grad_x.mul_(weights[:, :1])
    for h in range(1, heads):
        gathered = grad_out[:, h].index_select(0, destination)
        grad_weights[:, h] = _row_dots(gathered, x)
        grad_x.addcmul_(gathered, weights[:, h:h + 1])
    # through the softmax (slot order) to the logits, t and the scores
    weighted = grad_weights.index_select(0, col).mul_(alpha)
    total = reduce_messages(weighted, row, num_dst, "sum", rowptr)
    grad_logits = weighted.sub_(alpha * total.index_select(0, row))
    grad_t = (grad_logits * scores.index_select(0, col)).sum(0)
    # delta / ||x||, back in the messages' order
    grad_scores = grad_logits.mul_(t).index_select(0, position).div_(norms)
    grad_aux = grad_scores.t() @ x
    # the scores' part of d L / d x, in place
    grad_x.addmm_(grad_scores, aux)
    coefficient = (grad_scores * scores).sum(-1, keepdim=True).div_(norms)
    grad_x.addcmul_(x, coefficient, value=-1)
    return [grad_x, grad_aux, grad_t]


@_message_attention_backward.register_fake
def _backward_fake(grad_out, x, aux, t, alpha, scores, norms, rowptr, row,
                   col):
    return [torch.empty_like(x), torch.empty_like(aux), torch.empty_like(t)]


def _setup(ctx, inputs, output):
    x, aux, t, keep, rowptr, row, col = inputs
    _, alpha, scores, norms = output
    ctx.mark_non_differentiable(alpha, scores, norms)
    ctx.save_for_backward(x, aux, t, alpha, scores, norms, rowptr, row, col)
    ctx.keep = keep  # a double backward recomputes the forward


def _backward(ctx, grads):
    # alpha, scores and norms are kept for this backward, not
    # differentiable
    if torch.is_grad_enabled():  # recorded: a double backward
        x, aux, t, *_, rowptr, row, col = ctx.saved_tensors
        grad_x, grad_aux, grad_t = recorded_gradients(
            lambda *inputs: _attend(*inputs, ctx.keep, rowptr, row, col,
                                    False)[0],
            (x, aux, t), ctx.needs_input_grad[:3], grads[0])
    else:
        grad_x, grad_aux, grad_t = _message_attention_backward(
            grads[0].contiguous(), *ctx.saved_tensors)
    return grad_x, grad_aux, grad_t, None, None, None, None


_message_attention.register_autograd(_backward, setup_context=_setup)


def message_attention(x: Tensor, aux: Tensor, t: Tensor, rowptr: Tensor,
                      row: Tensor, keep: Optional[Tensor] = None,
                      col: Optional[Tensor] = None) -> Tensor:
    r"""``(N, H, F)``: per head, the softmax-weighted sum (inverse
    temperature ``t``, ``(H,)``) of each segment's messages by their cosine
    similarity to the unit vectors ``aux`` (``(H, F)``), over the messages
    ``keep`` (``(E, H)`` bool, slot order; at least one per non-empty
    segment) marks, or all. Segments without messages get 0.

    ``x`` (``(E, F)``) is in CSR slot order, or, with ``col``, in any order
    with ``col[e]`` the row of ``x`` in slot ``e`` (a CSR view's ``perm``):
    then no permuted copy of the messages is made. Differentiable in ``x``,
    ``aux`` and ``t`` (the gradients of the scores, the softmax and the sum
    in one operator: see the module's docstring)."""
    if x.dim() != 2 or aux.dim() != 2 or aux.size(1) != x.size(1) or \
            t.shape != (aux.size(0),):
        raise ValueError(f"expected x (E, F), aux (H, F) and t (H,), got "
                         f"{tuple(x.shape)}, {tuple(aux.shape)} and "
                         f"{tuple(t.shape)}")
    if keep is not None and keep.shape != (x.size(0), aux.size(0)):
        raise ValueError(f"keep must have shape {(x.size(0), aux.size(0))}, "
                         f"got {tuple(keep.shape)}")
    if col is None:
        col = torch.arange(x.size(0), device=x.device)
    elif col.shape != (x.size(0),):
        raise ValueError(f"col must have shape ({x.size(0)},), got "
                         f"{tuple(col.shape)}")
    return _message_attention(x, aux.to(x.dtype), t.to(x.dtype), keep,
                              rowptr, row, col)[0]

r"""GATv2's dynamic attention score, computed in edge chunks.

.. math::
    e_{ji,h} = \mathbf{a}_h^\top \mathrm{LeakyReLU}\big(\mathbf{x}^{src}_{j,h}
    + \mathbf{x}^{dst}_{i,h} + (\mathbf{W}_e \mathbf{e}_{ji})_h\big)

The pre-activation is ``E x H x C``; the forward pass forms it one chunk of
edges at a time and keeps nothing of that size for backward, which recomputes
it chunk by chunk. The edge projection :math:`\mathbf{W}_e \mathbf{e}_{ji}` is
also formed per chunk, so only ``E x H`` scores and the inputs stay alive.
Graphs whose whole pre-activation fits in one chunk skip the recomputation:
plain autograd keeps it, which is faster and costs at most one chunk.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .csr import CSRGraph

#: Elements of one chunk's ``E_chunk x H x C`` pre-activation.
CHUNK_ELEMENTS = 1 << 21


def _chunks(num_edges: int, width: int):
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for start in range(0, num_edges, step):
        yield slice(start, min(start + step, num_edges))


def _preactivation(x_src, x_dst, edge_attr, edge_weight, csr, part):
    s = x_src.index_select(0, csr.col[part])
    s += x_dst.index_select(0, csr.row[part])
    if edge_attr is not None:
        s += (edge_attr[part] @ edge_weight.t()).view_as(s)
    return s


class _GATv2Score(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_src, x_dst, att, edge_attr, edge_weight, csr,
                negative_slope):
        heads, channels = att.shape
        scores = x_src.new_empty(csr.num_edges, heads)
        for part in _chunks(csr.num_edges, heads * channels):
            s = _preactivation(x_src, x_dst, edge_attr, edge_weight, csr, part)
            scores[part] = torch.einsum("ehc,hc->eh",
                                        F.leaky_relu_(s, negative_slope), att)
        ctx.csr, ctx.negative_slope = csr, negative_slope
        ctx.save_for_backward(x_src, x_dst, att, edge_attr, edge_weight)
        return scores

    @staticmethod
    def backward(ctx, grad_scores):
        x_src, x_dst, att, edge_attr, edge_weight = ctx.saved_tensors
        csr, slope = ctx.csr, ctx.negative_slope
        need = ctx.needs_input_grad
        grad_src = torch.zeros_like(x_src) if need[0] else None
        grad_dst = torch.zeros_like(x_dst) if need[1] else None
        grad_att = torch.zeros_like(att) if need[2] else None
        grad_edge_attr = torch.empty_like(edge_attr) if need[3] else None
        grad_edge_weight = torch.zeros_like(edge_weight) if need[4] else None
        heads, channels = att.shape
        for part in _chunks(csr.num_edges, heads * channels):
            s = _preactivation(x_src, x_dst, edge_attr, edge_weight, csr, part)
            slope_factor = torch.where(s > 0, s.new_ones(()), s.new_full((), slope))
            g = grad_scores[part].unsqueeze(-1)
            if grad_att is not None:
                grad_att += (g * s * slope_factor).sum(0)
            d_s = slope_factor.mul_(g).mul_(att)  # d score / d pre-activation
            if grad_src is not None:
                grad_src.index_add_(0, csr.col[part], d_s)
            if grad_dst is not None:
                grad_dst.index_add_(0, csr.row[part], d_s)
            d_flat = d_s.view(d_s.size(0), -1)
            if grad_edge_attr is not None:
                grad_edge_attr[part] = d_flat @ edge_weight
            if grad_edge_weight is not None:
                grad_edge_weight += d_flat.t() @ edge_attr[part]
        return (grad_src, grad_dst, grad_att, grad_edge_attr, grad_edge_weight,
                None, None)


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
    if csr.num_edges * heads * channels <= CHUNK_ELEMENTS:
        s = _preactivation(x_src, x_dst, edge_attr, edge_weight, csr,
                           slice(None))
        return torch.einsum("ehc,hc->eh", F.leaky_relu(s, negative_slope),
                            att)
    return _GATv2Score.apply(x_src, x_dst, att, edge_attr, edge_weight, csr,
                             negative_slope)

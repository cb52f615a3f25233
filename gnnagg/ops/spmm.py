r"""Attention-weighted neighbourhood aggregation as sparse matrix products.

.. math::
    \mathbf{out}_{i,h} = \sum_{j \in \mathcal{N}(i)} \alpha_{ji,h}\,
    \mathbf{x}_{j,h}

For every head :math:`h` the weights form a sparse matrix
:math:`A_h \in \mathbb{R}^{N_{dst} \times N_{src}}` on the CSR view, so the
forward pass is one SpMM per head, the gradient of :math:`\mathbf{x}` is the
SpMM with :math:`A_h^\top`, and the gradient of :math:`\alpha` is the sampled
dense-dense product (SDDMM) :math:`(\mathbf{g}_h \mathbf{x}_h^\top) \odot
\mathrm{mask}(A)`. No ``E x H x C`` tensor is ever formed.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .csr import CSRGraph

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")


def _sparse(rowptr: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    return torch.sparse_csr_tensor(rowptr, col, values, shape,
                                   check_invariants=False)


class _WeightedAggregate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, alpha: Tensor, x: Tensor, csr: CSRGraph) -> Tensor:
        out = x.new_empty(csr.num_dst, x.size(1), x.size(2))
        shape = (csr.num_dst, csr.num_src)
        for h in range(x.size(1)):
            adj = _sparse(csr.rowptr, csr.col, alpha[:, h].contiguous(), shape)
            out[:, h] = adj @ x[:, h]
        ctx.csr = csr
        ctx.save_for_backward(alpha, x)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        alpha, x = ctx.saved_tensors
        csr: CSRGraph = ctx.csr
        grad_alpha = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_alpha = alpha.new_empty(alpha.shape)
            pattern = _sparse(csr.rowptr, csr.col, alpha.new_zeros(()).expand(
                csr.num_edges), (csr.num_dst, csr.num_src))
            for h in range(x.size(1)):
                grad_alpha[:, h] = torch.sparse.sampled_addmm(
                    pattern, grad_out[:, h], x[:, h].t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            rowptr_t, col_t, slot_t = csr.transpose
            grad_x = x.new_empty(x.shape)
            shape = (csr.num_src, csr.num_dst)
            for h in range(x.size(1)):
                adj_t = _sparse(rowptr_t, col_t, alpha[slot_t, h], shape)
                grad_x[:, h] = adj_t @ grad_out[:, h]
        return grad_alpha, grad_x, None


def weighted_aggregate(alpha: Tensor, x: Tensor, csr: CSRGraph) -> Tensor:
    r"""Sum the source features ``x`` (``(N_src, H, C)``) of every node's
    incoming edges, weighted per head by ``alpha`` (``(E, H)``, CSR order).
    Returns ``(N_dst, H, C)``; nodes without incoming edges get 0."""
    if alpha.dim() != 2 or x.dim() != 3 or alpha.size(1) != x.size(1):
        raise ValueError("expected alpha of shape (E, H) and x of shape "
                         f"(N, H, C), got {tuple(alpha.shape)} and "
                         f"{tuple(x.shape)}")
    if alpha.size(0) != csr.num_edges or x.size(0) != csr.num_src:
        raise ValueError(f"graph has {csr.num_edges} edges and {csr.num_src} "
                         f"source nodes, got {alpha.size(0)} weights and "
                         f"{x.size(0)} feature rows")
    return _WeightedAggregate.apply(alpha, x, csr)

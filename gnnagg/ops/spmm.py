r"""Attention-weighted neighbourhood aggregation as sparse matrix products,
the custom operator ``torch.ops.gnnagg.weighted_aggregate``.

.. math::
    \mathbf{out}_{i,h} = \sum_{j \in \mathcal{N}(i)} \alpha_{ji,h}\,
    \mathbf{x}_{j,h}

For every head :math:`h` the weights form a sparse matrix
:math:`A_h \in \mathbb{R}^{N_{dst} \times N_{src}}` on the CSR view, so on
the CPU the forward pass is one SpMM per head, the gradient of
:math:`\mathbf{x}` is the SpMM with :math:`A_h^\top`, and the gradient of
:math:`\alpha` is the sampled dense-dense product (SDDMM)
:math:`(\mathbf{g}_h \mathbf{x}_h^\top) \odot \mathrm{mask}(A)`: no
``E x H x C`` tensor is ever formed. The device-generic implementation (and
the CPU's for half precision, which PyTorch's CSR products lack) gathers,
weighs and scatters, as PyG does.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from .csr import CSRGraph
from .library import generic_forced, records_grad

#: dtypes PyTorch's CPU CSR products (``addmm``, ``sampled_addmm``) take
_SPARSE_DTYPES = (torch.float32, torch.float64)


def _sparse(rowptr: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    return torch.sparse_csr_tensor(rowptr, col, values, shape,
                                   check_invariants=False)


def _generic(alpha: Tensor, x: Tensor, col: Tensor, row: Tensor,
             num_dst: int) -> Tensor:
    out = x.new_zeros((num_dst,) + tuple(x.shape[1:]))
    return out.index_add_(0, row, alpha.unsqueeze(-1) * x.index_select(0,
                                                                       col))


def _use_sparse(*tensors: Tensor) -> bool:
    return not generic_forced() and all(
        t.device.type == "cpu" and t.dtype in _SPARSE_DTYPES for t in tensors)


@torch.library.custom_op("gnnagg::weighted_aggregate", mutates_args=())
def _weighted_aggregate(alpha: Tensor, x: Tensor, rowptr: Tensor,
                        col: Tensor, row: Tensor, rowptr_t: Optional[Tensor],
                        col_t: Optional[Tensor], slot_t: Optional[Tensor],
                        num_dst: int) -> Tensor:
    if not _use_sparse(alpha, x):
        return _generic(alpha, x, col, row, num_dst)
    out = x.new_empty((num_dst,) + tuple(x.shape[1:]))
    shape = (num_dst, x.size(0))
    for h in range(x.size(1)):
        adj = _sparse(rowptr, col, alpha[:, h].contiguous(), shape)
        out[:, h] = adj @ x[:, h]
    return out


@_weighted_aggregate.register_fake
def _fake(alpha, x, rowptr, col, row, rowptr_t, col_t, slot_t, num_dst):
    return x.new_empty((num_dst,) + tuple(x.shape[1:]))


@torch.library.custom_op("gnnagg::weighted_aggregate_backward",
                         mutates_args=())
def _weighted_aggregate_backward(
        grad_out: Tensor, alpha: Tensor, x: Tensor, rowptr: Tensor,
        col: Tensor, row: Tensor, rowptr_t: Optional[Tensor],
        col_t: Optional[Tensor], slot_t: Optional[Tensor],
        need_alpha: bool, need_x: bool) -> List[Tensor]:
    """``[grad_alpha, grad_x]`` (empty where not needed): SDDMM and the
    transposed SpMM on the CPU, gathers and scatters elsewhere."""
    grad_alpha, grad_x = alpha.new_empty(0), x.new_empty(0)
    sparse = _use_sparse(alpha, x, grad_out)
    if need_alpha:
        if sparse:
            grad_alpha = alpha.new_empty(alpha.shape)
            pattern = _sparse(rowptr, col, alpha.new_zeros(()).expand(
                col.numel()), (rowptr.numel() - 1, x.size(0)))
            for h in range(x.size(1)):
                grad_alpha[:, h] = torch.sparse.sampled_addmm(
                    pattern, grad_out[:, h], x[:, h].t(), beta=0.0).values()
        else:
            grad_alpha = (grad_out.index_select(0, row) *
                          x.index_select(0, col)).sum(-1)
    if need_x:
        if sparse and rowptr_t is not None and col_t is not None and \
                slot_t is not None:
            grad_x = x.new_empty(x.shape)
            shape = (x.size(0), rowptr.numel() - 1)
            alpha_t = alpha.index_select(0, slot_t)  # one gather, all heads
            for h in range(x.size(1)):
                adj_t = _sparse(rowptr_t, col_t, alpha_t[:, h].contiguous(),
                                shape)
                grad_x[:, h] = adj_t @ grad_out[:, h]
        else:
            grad_x = _generic(alpha, grad_out, row, col, x.size(0))
    return [grad_alpha, grad_x]


@_weighted_aggregate_backward.register_fake
def _backward_fake(grad_out, alpha, x, rowptr, col, row, rowptr_t, col_t,
                   slot_t, need_alpha, need_x):
    return [alpha.new_empty(alpha.shape if need_alpha else (0,)),
            x.new_empty(x.shape if need_x else (0,))]


def _setup(ctx, inputs, output):
    alpha, x, rowptr, col, row, rowptr_t, col_t, slot_t, num_dst = inputs
    ctx.save_for_backward(alpha, x, rowptr, col, row, rowptr_t, col_t,
                          slot_t)


def _backward(ctx, grad_out):
    need_alpha, need_x = ctx.needs_input_grad[:2]
    grad_alpha, grad_x = _weighted_aggregate_backward(
        grad_out, *ctx.saved_tensors, need_alpha, need_x)
    return (grad_alpha if need_alpha else None, grad_x if need_x else None,
            None, None, None, None, None, None, None)


_weighted_aggregate.register_autograd(_backward, setup_context=_setup)
torch.library.register_autocast("gnnagg::weighted_aggregate", "cpu",
                                torch.bfloat16)
torch.library.register_autocast("gnnagg::weighted_aggregate", "cuda",
                                torch.float16)


def weighted_aggregate(alpha: Tensor, x: Tensor, csr: CSRGraph) -> Tensor:
    r"""Sum the source features ``x`` (``(N_src, H, C)``) of every node's
    incoming edges, weighted per head by ``alpha`` (``(E, H)``, CSR order).
    Returns ``(N_dst, H, C)``; nodes without incoming edges get 0. Under
    ``torch.autocast`` it runs in the autocast dtype, as a matmul."""
    if alpha.dim() != 2 or x.dim() != 3 or alpha.size(1) != x.size(1):
        raise ValueError("expected alpha of shape (E, H) and x of shape "
                         f"(N, H, C), got {tuple(alpha.shape)} and "
                         f"{tuple(x.shape)}")
    if alpha.size(0) != csr.num_edges or x.size(0) != csr.num_src:
        raise ValueError(f"graph has {csr.num_edges} edges and {csr.num_src} "
                         f"source nodes, got {alpha.size(0)} weights and "
                         f"{x.size(0)} feature rows")
    if alpha.dtype != x.dtype and not torch.is_autocast_enabled(
            x.device.type):
        raise TypeError(f"alpha ({alpha.dtype}) and x ({x.dtype}) must have "
                        "the same dtype")
    transpose = (None, None, None)
    if records_grad(x) and _use_sparse(alpha, x):
        transpose = csr.transpose
    return _weighted_aggregate(alpha, x, csr.rowptr, csr.col, csr.row,
                               *transpose, csr.num_dst)

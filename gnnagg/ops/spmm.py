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
``E x H x C`` tensor is ever formed. On a graph used a few times the
:math:`A_h` become the diagonal blocks of one matrix
(:meth:`CSRGraph.head_blocks`) and each product one call for all heads.
The device-generic implementation (and the CPU's for half precision,
which PyTorch's CSR products lack) gathers, weighs and scatters, as PyG
does.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .csr import CSRGraph, csr_matrix, sparse_product
from .library import (backward_kernel, call_operator, eager_function,
                      generic_forced, recorded_gradients, records_grad)

#: Weighted aggregations a graph serves head by head before the CPU builds
#: its head-block matrix (:meth:`CSRGraph.head_blocks`, and its transpose)
#: and multiplies by all heads at once. Both directions' blocks took 1.25 ms
#: to build on a batch of 128 molecules (4 heads), 25 ms on a random graph
#: of 20,000 nodes and 200,000 edges and 0.5 s at ogbn-arxiv scale, while a
#: GATConv step on them took 0.15-0.5 ms, 5-11 ms and 70 ms (8%) less
#: with them (2 threads): a few steps on the same graph pay for them, one
#: does not (a new batch per step).
HEAD_BLOCKS_AFTER = 8

#: dtypes PyTorch's CPU CSR products (``addmm``, ``sampled_addmm``) take
_SPARSE_DTYPES = (torch.float32, torch.float64)


def _generic(alpha: Tensor, x: Tensor, col: Tensor, row: Tensor,
             num_dst: int) -> Tensor:
    out = x.new_zeros((num_dst,) + tuple(x.shape[1:]))
    return out.index_add_(0, row, alpha.unsqueeze(-1) * x.index_select(0,
                                                                       col))


def _head_blocks_pay(csr: CSRGraph, heads: int) -> bool:
    """Whether the CPU multiplies by all heads at once, as one matrix of
    head blocks (:meth:`CSRGraph.head_blocks`), rather than head by head:
    in eager mode, once ``csr`` has served :data:`HEAD_BLOCKS_AFTER`
    weighted aggregations (this call counts one)."""
    if torch.compiler.is_compiling() or \
            max(csr.num_src, csr.num_dst) * heads >= 2 ** 31:
        return False
    served = csr.__dict__.get("_weighted_aggregations", 0)
    csr.__dict__["_weighted_aggregations"] = served + 1
    return served >= HEAD_BLOCKS_AFTER


def _use_sparse(*tensors: Tensor) -> bool:
    return not generic_forced() and all(
        t.device.type == "cpu" and t.dtype in _SPARSE_DTYPES for t in tensors)


def _block_product(rowptr: Tensor, col: Tensor, values: Tensor,
                   x: Tensor, num_rows: int) -> Tensor:
    """The head-block matrix (:meth:`CSRGraph.head_blocks`) with
    ``values`` times ``x`` (``(N, H, C)``): one SpMM for all heads."""
    heads, channels = x.size(1), x.size(2)
    adj = csr_matrix(rowptr, col, values,
                     (num_rows * heads, x.size(0) * heads))
    return sparse_product(adj, x.flatten(0, 1)).view(num_rows, heads,
                                                     channels)


def _weighted_aggregate_kernel(
        alpha: Tensor, x: Tensor, rowptr: Tensor, col: Tensor, row: Tensor,
        rowptr_t: Optional[Tensor], col_t: Optional[Tensor],
        slot_t: Optional[Tensor], block_rowptr: Optional[Tensor],
        block_col: Optional[Tensor], block_slot: Optional[Tensor],
        block_rowptr_t: Optional[Tensor], block_col_t: Optional[Tensor],
        block_slot_t: Optional[Tensor], num_dst: int) -> Tensor:
    if not _use_sparse(alpha, x):
        return _generic(alpha, x, col, row, num_dst)
    if block_rowptr is not None and block_col is not None and \
            block_slot is not None:
        return _block_product(block_rowptr, block_col,
                              alpha.reshape(-1).index_select(0, block_slot),
                              x, num_dst)
    out = x.new_empty((num_dst,) + tuple(x.shape[1:]))
    shape = (num_dst, x.size(0))
    for h in range(x.size(1)):
        adj = csr_matrix(rowptr, col, alpha[:, h].contiguous(), shape)
        out[:, h] = sparse_product(adj, x[:, h])
    return out


_weighted_aggregate = torch.library.custom_op(
    "gnnagg::weighted_aggregate", _weighted_aggregate_kernel, mutates_args=())


@_weighted_aggregate.register_fake
def _fake(alpha, x, *structure):
    num_dst = structure[-1]
    return x.new_empty((num_dst,) + tuple(x.shape[1:]))


def _weighted_aggregate_grads(
        grad_out: Tensor, alpha: Tensor, x: Tensor, rowptr: Tensor,
        col: Tensor, row: Tensor, rowptr_t: Optional[Tensor],
        col_t: Optional[Tensor], slot_t: Optional[Tensor],
        block_rowptr: Optional[Tensor], block_col: Optional[Tensor],
        block_slot: Optional[Tensor], block_rowptr_t: Optional[Tensor],
        block_col_t: Optional[Tensor], block_slot_t: Optional[Tensor],
        need_alpha: bool, need_x: bool) -> List[Tensor]:
    """``[grad_alpha, grad_x]`` (empty where not needed): SDDMM and the
    transposed SpMM on the CPU (over all heads at once with the head
    blocks), gathers and scatters elsewhere."""
    grad_alpha, grad_x = alpha.new_empty(0), x.new_empty(0)
    sparse = _use_sparse(alpha, x, grad_out)
    if need_alpha:
        if sparse and block_rowptr is not None and block_col is not None \
                and block_slot is not None:
            rows, cols = grad_out.flatten(0, 1), x.flatten(0, 1)
            shape = (rows.size(0), cols.size(0))
            pattern = csr_matrix(block_rowptr, block_col, alpha.new_zeros(
                ()).expand(block_col.numel()), shape)
            # into a matrix of the same structure: out of place, the
            # product copies the pattern's index arrays too (arxiv scale:
            # 89 against 119 ms; 128 molecules: 0.20 against 0.25 ms)
            sampled = csr_matrix(block_rowptr, block_col,
                                 alpha.new_empty(block_col.numel()), shape)
            torch.sparse.sampled_addmm(pattern, rows, cols.t(), beta=0.0,
                                       out=sampled)
            grad_alpha = alpha.new_empty(alpha.numel()).index_copy_(
                0, block_slot, sampled.values()).view(alpha.shape)
        elif sparse:
            grad_alpha = alpha.new_empty(alpha.shape)
            pattern = csr_matrix(rowptr, col, alpha.new_zeros(()).expand(
                col.numel()), (rowptr.numel() - 1, x.size(0)))
            for h in range(x.size(1)):
                grad_alpha[:, h] = torch.sparse.sampled_addmm(
                    pattern, grad_out[:, h], x[:, h].t(), beta=0.0).values()
        else:
            grad_alpha = (grad_out.index_select(0, row) *
                          x.index_select(0, col)).sum(-1)
    if need_x:
        if sparse and block_rowptr_t is not None and \
                block_col_t is not None and block_slot_t is not None:
            grad_x = _block_product(
                block_rowptr_t, block_col_t,
                alpha.reshape(-1).index_select(0, block_slot_t), grad_out,
                x.size(0))
        elif sparse and rowptr_t is not None and col_t is not None and \
                slot_t is not None:
            grad_x = x.new_empty(x.shape)
            shape = (x.size(0), rowptr.numel() - 1)
            alpha_t = alpha.index_select(0, slot_t)  # one gather, all heads
            for h in range(x.size(1)):
                adj_t = csr_matrix(rowptr_t, col_t,
                                   alpha_t[:, h].contiguous(), shape)
                grad_x[:, h] = sparse_product(adj_t, grad_out[:, h])
        else:
            grad_x = _generic(alpha, grad_out, row, col, x.size(0))
    return [grad_alpha, grad_x]


_weighted_aggregate_backward = torch.library.custom_op(
    "gnnagg::weighted_aggregate_backward", _weighted_aggregate_grads,
    mutates_args=())


@_weighted_aggregate_backward.register_fake
def _backward_fake(grad_out, alpha, x, rowptr, col, row, rowptr_t, col_t,
                   slot_t, *blocks_and_needs):
    need_alpha, need_x = blocks_and_needs[-2:]
    return [alpha.new_empty(alpha.shape if need_alpha else (0,)),
            x.new_empty(x.shape if need_x else (0,))]


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:-1])


def _backward(ctx, grad_out):
    need_alpha, need_x = ctx.needs_input_grad[:2]
    if torch.is_grad_enabled():  # recorded: a double backward
        alpha, x, rowptr, col, row = ctx.saved_tensors[:5]
        grad_alpha, grad_x = recorded_gradients(
            lambda a, v: _generic(a, v, col, row, rowptr.numel() - 1),
            (alpha, x), (need_alpha, need_x), grad_out)
    else:
        backward = backward_kernel(_weighted_aggregate_grads,
                                   _weighted_aggregate_backward, grad_out)
        grad_alpha, grad_x = backward(grad_out.contiguous(),
                                      *ctx.saved_tensors, need_alpha, need_x)
    return (grad_alpha if need_alpha else None,
            grad_x if need_x else None) + (None,) * 13


_weighted_aggregate.register_autograd(_backward, setup_context=_setup)
torch.library.register_autocast("gnnagg::weighted_aggregate", "cpu",
                                torch.bfloat16)
torch.library.register_autocast("gnnagg::weighted_aggregate", "cuda",
                                torch.float16)
#: ``gnnagg::weighted_aggregate`` past the dispatcher
_WeightedAggregateFunction = eager_function(
    "_WeightedAggregateFunction", _weighted_aggregate_kernel, _setup,
    _backward, autocast=True)


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
    no_blocks: Tuple[Optional[Tensor], ...] = (None, None, None)
    blocks = blocks_t = no_blocks
    if _use_sparse(alpha, x) and _head_blocks_pay(csr, x.size(1)):
        # the products view x as (N H, C): a strided x is copied once here,
        # and backward keeps the copy
        x = x.contiguous()
        blocks = csr.head_blocks(x.size(1))
        if records_grad(x):
            blocks_t = csr.head_blocks(x.size(1), transpose=True)
    elif records_grad(x) and _use_sparse(alpha, x):
        transpose = csr.transpose
    return call_operator(_weighted_aggregate, _WeightedAggregateFunction,
                         alpha, x, csr.rowptr, csr.col, csr.row, *transpose,
                         *blocks, *blocks_t, csr.num_dst)

r"""A linear map whose weight depends on each node's in-degree through a few
scalar functions of it (PNA's degree scalers followed by a linear layer):

.. math::
    \mathbf{out}_i = \sum_{s=1}^{S} c_s(d_i)\, W_s \mathbf{x}_i
                   = W_{d_i} \mathbf{x}_i, \qquad
    W_d = \sum_s c_s(d) W_s,

computed without the ``N x S K`` input of scaled copies, forward or
backward.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import torch
from torch import Tensor

from .csr import CSRGraph
from .library import call_operator, eager_function, recorded_gradients
from .permute import permute_rows

#: distinct in-degrees up to which :func:`degree_scaled_linear` builds one
#: matrix per degree (molecules: a handful) instead of one product per
#: scaler. PNAConv at ogbn-arxiv scale: 34 groups (uniform random edges)
#: take 0.94x the per-scaler step time, 367 (preferential attachment,
#: 169,343 nodes) 0.95x; :data:`GROUP_SAVING` and the matrices' size decide
#: below it
MAX_DEGREE_GROUPS = 1024
#: multiply-adds the grouped computation must save per degree group to pay
#: for the group's own product calls and row copies (break-even measured on
#: one CPU thread, forward and backward: 0.4-1M; PNAConv on a batch of 128
#: molecules, 10M per group, is 0.77x the per-scaler time on one thread and
#: 0.86x on two; PNA's multitask graphs, 0.35M per group, 1.17x)
GROUP_SAVING = 1 << 20
#: most entries of the matrices :math:`W_d` (``G O K``) per entry of the
#: per-scaler product they replace (``S N O``): no more memory than that
GROUP_WEIGHT_SHARE = 1.0


def groups_by_degree(csr: CSRGraph, weight_shape: Sequence[int],
                     max_groups: int = MAX_DEGREE_GROUPS) -> bool:
    """Whether :func:`degree_scaled_linear` with a weight of
    ``weight_shape`` (``(S, O, K)``) takes one product per distinct
    in-degree of ``csr``: at most ``max_groups`` of them, the
    :math:`(S - 1) N O K` multiply-adds that grouping saves at least
    :data:`GROUP_SAVING` per group, the ``G`` matrices :math:`W_d`
    (:math:`G O K` entries) no larger than the per-scaler product
    (:math:`S N O`, times :data:`GROUP_WEIGHT_SHARE`), and not under
    ``torch.compile`` (where the groups' sizes would be data)."""
    if torch.compiler.is_compiling():
        return False
    num_groups = len(csr.degree_groups[3])
    num_scalers, out_features, in_features = weight_shape
    saved = (num_scalers - 1) * csr.num_dst * out_features * in_features
    return 0 < num_groups <= max_groups and \
        saved >= num_groups * GROUP_SAVING and \
        num_groups * in_features <= \
        GROUP_WEIGHT_SHARE * num_scalers * csr.num_dst


def _split_products(x: Tensor, weight: Tensor, sizes: List[int]) -> Tensor:
    """The grouped products in PyTorch's differentiable operations."""
    return torch.cat([part @ w.t() for part, w in
                      zip(x.split(sizes), weight.unbind(0))])


def _group_products_kernel(x: Tensor, weight: Tensor,
                           sizes: List[int]) -> Tensor:
    out = x.new_empty((x.size(0), weight.size(1)))
    start = 0
    for w, size in zip(weight, sizes):
        rows = slice(start, start + size)
        torch.mm(x[rows], w.t(), out=out[rows])
        start += size
    return out


_group_products = torch.library.custom_op(
    "gnnagg::group_products", _group_products_kernel, mutates_args=())


@_group_products.register_fake
def _(x: Tensor, weight: Tensor, sizes: List[int]) -> Tensor:
    return x.new_empty((x.size(0), weight.size(1)))


def _group_products_setup(ctx, inputs, output) -> None:
    x, weight, sizes = inputs
    ctx.sizes = sizes
    ctx.save_for_backward(x, weight)


def _group_products_backward(ctx, grad: Tensor):
    """Each group's ``grad_g W_g`` and ``grad_g^T x_g``, written into one
    buffer each; a recorded backward differentiates the split products."""
    x, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad[:2]
    if torch.is_grad_enabled():
        grad_x, grad_weight = recorded_gradients(
            lambda a, w: _split_products(a, w, ctx.sizes), (x, weight),
            needs, grad)
        return grad_x, grad_weight, None
    grad_x = torch.empty_like(x) if needs[0] else None
    grad_weight = torch.empty_like(weight) if needs[1] else None
    start = 0
    for group, size in enumerate(ctx.sizes):
        rows = slice(start, start + size)
        if grad_x is not None:
            torch.mm(grad[rows], weight[group], out=grad_x[rows])
        if grad_weight is not None:
            torch.mm(grad[rows].t(), x[rows], out=grad_weight[group])
        start += size
    return grad_x, grad_weight, None


_group_products.register_autograd(_group_products_backward,
                                  setup_context=_group_products_setup)
#: ``gnnagg::group_products`` past the dispatcher
_GroupProductsFunction = eager_function(
    "_GroupProductsFunction", _group_products_kernel, _group_products_setup,
    _group_products_backward)


def group_products(x: Tensor, weight: Tensor, sizes: List[int]) -> Tensor:
    r""":math:`\mathbf{out}_r = W_g \mathbf{x}_r` for the rows ``r`` of
    group ``g``, the groups consecutive runs of ``sizes`` rows: one product
    per group, written into one output (and, backward, one input gradient
    and one weight gradient), where split products would add a
    concatenation each way (0.9x the time of PNA's degree-wise linear map
    on the molecule batch). Under autocast, the split products (in the
    autocast dtype, as matmuls).

    Shapes:
        - **input:** ``x`` :math:`(N, K)`, ``weight`` :math:`(G, O, K)`
        - **output:** :math:`(N, O)`
    """
    if torch.is_autocast_enabled(x.device.type):
        return _split_products(x, weight, sizes)
    return call_operator(_group_products, _GroupProductsFunction, x, weight,
                         sizes)


def degree_scaled_linear(x: Tensor, weight: Tensor,
                         scale: Callable[[Tensor], Tensor], csr: CSRGraph,
                         max_groups: int = MAX_DEGREE_GROUPS,
                         rows_by_degree: bool = False) -> Tensor:
    r""":math:`\sum_s c_s(d_i) W_s \mathbf{x}_i` for every destination node
    :math:`i` of ``csr``.

    With at most ``max_groups`` distinct degrees, each group large enough
    to pay for its own product (:func:`groups_by_degree`), nodes are grouped
    by degree and each group takes one product with its :math:`W_d`; else
    one product with all :math:`W_s` stacked, scaled per node and summed.
    Grouping permutes the rows of ``x`` unless they come grouped already:
    computed on :attr:`CSRGraph.by_degree` (``rows_by_degree``).

    Args:
        x (torch.Tensor): node features, ``(N, K)`` with ``N`` the number
            of destination nodes of ``csr``.
        weight (torch.Tensor): the :math:`W_s` stacked, ``(S, O, K)``.
        scale (callable): degrees ``(D,)`` (float or integer) to the
            factors :math:`c_s(d)`, ``(D, S)``.
        csr (CSRGraph): the graph; its in-degrees are :math:`d_i`.
        max_groups (int, optional): most distinct degrees for the grouped
            computation. (default: :obj:`1024`)
        rows_by_degree (bool, optional): row ``r`` of ``x`` belongs to node
            ``csr.by_degree``'s ``r``, not ``csr``'s; only where
            :func:`groups_by_degree` holds. The output is in ``csr``'s
            order either way. (default: :obj:`False`)

    Shapes:
        - **input:** ``x`` :math:`(N, K)`, ``weight`` :math:`(S, O, K)`
        - **output:** :math:`(N, O)`
    """
    num_scalers, out_features, _ = weight.shape
    grouped = groups_by_degree(csr, weight.shape, max_groups)
    if rows_by_degree and not grouped:
        raise ValueError("rows_by_degree=True needs the grouped computation "
                         f"(at most max_groups={max_groups} distinct "
                         "degrees, enough rows per degree, not compiling: "
                         "groups_by_degree)")
    if grouped:
        degrees, order, position, sizes = csr.degree_groups
        w_degree = torch.einsum("gs,sok->gok", scale(degrees), weight)
        if not rows_by_degree:
            x = permute_rows(x, order, position)
        return permute_rows(group_products(x, w_degree, sizes), position,
                            order)
    per_scaler = x @ weight.reshape(num_scalers * out_features, -1).t()
    return (per_scaler.view(-1, num_scalers, out_features) *
            scale(csr.degree).unsqueeze(-1)).sum(1)

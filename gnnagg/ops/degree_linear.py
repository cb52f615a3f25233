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

from typing import Callable

import torch
from torch import Tensor

from .csr import CSRGraph
from .permute import permute_rows

#: distinct in-degrees up to which :func:`degree_scaled_linear` builds one
#: matrix per degree (molecules: a handful) instead of one product per scaler
MAX_DEGREE_GROUPS = 32


def degree_scaled_linear(x: Tensor, weight: Tensor,
                         scale: Callable[[Tensor], Tensor], csr: CSRGraph,
                         max_groups: int = MAX_DEGREE_GROUPS) -> Tensor:
    r""":math:`\sum_s c_s(d_i) W_s \mathbf{x}_i` for every destination node
    :math:`i` of ``csr``.

    With at most ``max_groups`` distinct degrees, nodes are grouped by
    degree and each group takes one product with its :math:`W_d` (not
    under ``torch.compile``, where the groups' sizes would be data); else
    one product with all :math:`W_s` stacked, scaled per node and summed.

    Args:
        x (torch.Tensor): node features, ``(N, K)`` with ``N`` the number
            of destination nodes of ``csr``.
        weight (torch.Tensor): the :math:`W_s` stacked, ``(S, O, K)``.
        scale (callable): degrees ``(D,)`` (float or integer) to the
            factors :math:`c_s(d)`, ``(D, S)``.
        csr (CSRGraph): the graph; its in-degrees are :math:`d_i`.
        max_groups (int, optional): most distinct degrees for the grouped
            computation. (default: :obj:`32`)

    Shapes:
        - **input:** ``x`` :math:`(N, K)`, ``weight`` :math:`(S, O, K)`
        - **output:** :math:`(N, O)`
    """
    num_scalers, out_features, _ = weight.shape
    grouped = not torch.compiler.is_compiling() and \
        0 < len(csr.degree_groups[3]) <= max_groups
    if grouped:
        degrees, order, position, sizes = csr.degree_groups
        w_degree = torch.einsum("gs,sok->gok", scale(degrees), weight)
        groups = permute_rows(x, order, position).split(sizes)
        return permute_rows(torch.cat([part @ w.t() for part, w in
                                       zip(groups, w_degree.unbind(0))]),
                            position, order)
    per_scaler = x @ weight.reshape(num_scalers * out_features, -1).t()
    return (per_scaler.view(-1, num_scalers, out_features) *
            scale(csr.degree).unsqueeze(-1)).sum(1)

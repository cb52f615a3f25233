r"""Principal Neighbourhood Aggregation (Corso et al., 2020) on gnnagg's
segment kernels."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.conv import PNAConv as PyGPNAConv
from torch_geometric.typing import SparseTensor

from ...ops import (MAX_DEGREE_GROUPS, CSRGraph, csr_view, neighbor_stats,
                   permute_rows, segment_stats, shift_stats)
from ..aggr import DegreeScalerAggregation
from .fusion import (MESSAGE_HOOKS, PROPAGATE_HOOKS, FusedMessagePassing,
                     message_path_needed)
from .inputs import (check_edge_features, check_features,
                     edge_index_and_sizes, layer_dtype)

#: hooks that make PNAConv run PyG's path: its fused path computes the
#: scaled aggregation only inside U's first linear map, so it has no
#: propagate output for propagate hooks to see
PNA_HOOKS = MESSAGE_HOOKS + PROPAGATE_HOOKS


def _towers(values: Tensor) -> List[Tensor]:
    """The towers' slices of ``(N, T, F)`` values; one tower's as a view,
    whose gradient flows back without the copy of ``unbind``'s."""
    if values.size(1) == 1:
        return [values.view(values.size(0), values.size(2))]
    return list(values.unbind(1))


class PNAConv(FusedMessagePassing, PyGPNAConv):
    r"""The PNA operator of "Principal Neighbourhood Aggregation for Graph
    Nets":

    .. math::
        \mathbf{x}_i^{\prime} = U\Big(\mathbf{x}_i, \underset{(j,i) \in
        \mathcal{E}}{\bigoplus} M\big(\mathbf{x}_i, \mathbf{x}_j,
        \mathbf{e}_{j,i}\big)\Big), \qquad
        \bigoplus = \underbrace{\begin{bmatrix} 1 \\ S(d, \alpha=1) \\
        S(d, \alpha=-1) \end{bmatrix}}_{\text{scalers}} \otimes
        \underbrace{\begin{bmatrix} \mu \\ \sigma \\ \max \\ \min
        \end{bmatrix}}_{\text{aggregators}}

    per tower, :math:`M` and :math:`U` MLPs (`Corso et al., 2020
    <https://arxiv.org/abs/2004.05718>`_).

    A drop-in replacement for :class:`torch_geometric.nn.PNAConv`, which it
    derives from: PyG's constructor, parameters, ``repr``,
    ``get_degree_histogram`` and ``forward`` (the message path). That path
    runs in explain mode, with message, aggregate, edge or propagate hooks,
    ``decomposed_layers > 1`` or reversed ``flow``; otherwise gnnagg's fused
    path runs (it does not go through ``propagate``): the first linear map
    of :math:`M` on :math:`[\mathbf{x}_i \Vert \mathbf{x}_j \Vert
    \mathbf{e}_{j,i}]` is split into :math:`W_i\mathbf{x}_i +
    W_j\mathbf{x}_j + W_e\mathbf{e}_{j,i}`, node terms computed per node;
    statistics of node values come from sparse reductions and share two
    fused segment passes; the scalers are folded into :math:`U`'s first
    linear map, one matrix per distinct degree, so the ``N x (1 + S A) F``
    concatenation is never built.

    Args:
        in_channels (int): input size.
        out_channels (int): output size.
        aggregators (list of str): names from ``sum, mean, min, max, var,
            std, softmax, powermean`` (and any PyG aggregation name).
        scalers (list of str): names from ``identity, amplification,
            attenuation, linear, inverse_linear``.
        deg (Tensor): in-degree histogram of the training graphs
            (:meth:`get_degree_histogram`).
        edge_dim (int, optional): edge feature size. (default: ``None``)
        towers (int, optional): towers; ``out_channels`` must divide by it.
            (default: ``1``)
        pre_layers (int, optional): depth of :math:`M`. (default: ``1``)
        post_layers (int, optional): depth of :math:`U`. (default: ``1``)
        divide_input (bool, optional): split the input features across
            towers. (default: ``False``)
        act (str or Callable, optional): activation between MLP layers.
            (default: ``"relu"``)
        act_kwargs (dict, optional): its arguments. (default: ``None``)
        train_norm (bool, optional): learn the scalers' degree normalisers.
            (default: ``False``)
        **kwargs: :class:`~torch_geometric.nn.conv.MessagePassing` options.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, edge
          indices :math:`(2, |\mathcal{E}|)`, edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, F_{out})`

    Example::

        >>> deg = torch.tensor([1, 3, 1])  # nodes of in-degree 0, 1, 2
        >>> conv = PNAConv(16, 32, ["mean", "max"], ["identity", "amplification"],
        ...                deg)
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    def __init__(self, in_channels: int, out_channels: int,
                 aggregators: List[str], scalers: List[str], deg: Tensor,
                 edge_dim: Optional[int] = None, towers: int = 1,
                 pre_layers: int = 1, post_layers: int = 1,
                 divide_input: bool = False,
                 act: Union[str, Callable, None] = "relu",
                 act_kwargs: Optional[Dict[str, Any]] = None,
                 train_norm: bool = False, **kwargs):
        if divide_input and in_channels % towers != 0:
            raise ValueError(f"in_channels ({in_channels}) must be divisible "
                             f"by towers ({towers}) with divide_input")
        if out_channels % towers != 0:
            raise ValueError(f"out_channels ({out_channels}) must be "
                             f"divisible by towers ({towers})")
        aggr = DegreeScalerAggregation(aggregators, scalers, deg, train_norm)
        super().__init__(in_channels, out_channels, aggregators, scalers,
                         torch.as_tensor(deg), edge_dim, towers, pre_layers,
                         post_layers, divide_input, act, act_kwargs,
                         train_norm, **kwargs)
        self.aggr_module = aggr  # gnnagg's: same buffers, its kernels

    def forward(self, x: Tensor, edge_index,
                edge_attr: Optional[Tensor] = None) -> Tensor:
        if message_path_needed(self, PNA_HOOKS) or \
                isinstance(edge_index, SparseTensor):
            # PyG's forward calls propagate, this one not:
            # propagate_type: (x: Tensor, edge_attr: OptTensor)
            return super().forward(x, edge_index, edge_attr)
        check_features("x", x, self.in_channels, layer_dtype(self))
        csr = csr_view(*edge_index_and_sizes(edge_index, x.size(0),
                                             x.size(0)))
        edge_feat = self._edge_features(csr, edge_attr)
        if self.divide_input:
            x = x.view(-1, self.towers, self.F_in)
        else:
            x = x.view(-1, 1, self.F_in)
        # statistics of node values, grouped by degree: in group order
        by_degree = self._statistics is not None and edge_feat is None and \
            self.aggr_module.groups_by_degree(
                self.post_nns[0][0].weight[:, self.F_in:], csr,
                self.MAX_DEGREE_GROUPS)
        if self._statistics is not None:
            aggregated = self._aggregate_decomposed(x, csr, edge_feat,
                                                    by_degree)
        else:
            aggregated = self.aggr_module.aggr.reduce_segments(
                self._messages(x, csr, edge_feat), csr)
        return self.lin(self._post(x, aggregated, csr, by_degree))

    #: distinct in-degrees up to which :meth:`_post` builds one matrix per
    #: degree (see :func:`~gnnagg.ops.degree_scaled_linear`)
    MAX_DEGREE_GROUPS = MAX_DEGREE_GROUPS

    def _tower_products(self, x: Tensor, weights: List[Tensor],
                        biases: Optional[List[Tensor]] = None) -> Tensor:
        r""":math:`W_t \mathbf{x}_t (+ b_t)` for every tower :math:`t`,
        ``(N, T, O)``: ``x`` is ``(N, T, K)`` with ``divide_input``, else
        ``(N, 1, K)``, shared by the towers and taken through one product
        with the weights stacked."""
        if x.size(1) == 1:
            weight = torch.cat(weights) if len(weights) > 1 else weights[0]
            out = x[:, 0] @ weight.t() if biases is None else torch.addmm(
                torch.cat(biases), x[:, 0], weight.t())
            return out.view(x.size(0), len(weights), weights[0].size(0))
        return torch.stack([F.linear(x_t, w, None if biases is None else
                                     biases[t])
                            for t, (x_t, w) in enumerate(zip(x.unbind(1),
                                                             weights))], dim=1)

    def _post(self, x: Tensor, aggregated: Tensor, csr: CSRGraph,
              by_degree: bool = False) -> Tensor:
        r""":math:`U` of every tower, concatenated. Its first linear map acts
        on :math:`[\mathbf{x}_i \Vert s_1(d_i) \mathbf{a}_i \Vert \dots
        \Vert s_S(d_i) \mathbf{a}_i]` and is computed as :math:`W_x
        \mathbf{x}_i + \sum_s s(d_i) W_s \mathbf{a}_i + b`
        (:func:`~gnnagg.ops.degree_scaled_linear`): the ``N x (1 + S A) F``
        input is never built, in forward or backward. ``aggregated``'s rows
        are ``csr.by_degree``'s with ``by_degree``."""
        firsts = [nn[0] for nn in self.post_nns]
        node_terms = self._tower_products(
            x, [first.weight[:, :self.F_in] for first in firsts],
            None if firsts[0].bias is None else [f.bias for f in firsts])
        out = [nn[1:](self.aggr_module.scaled_linear(
            aggregated_t, first.weight[:, self.F_in:], csr,
            self.MAX_DEGREE_GROUPS, rows_by_degree=by_degree) + node_term)
            for nn, first, node_term, aggregated_t in zip(
                self.post_nns, firsts, _towers(node_terms),
                _towers(aggregated))]
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def _edge_features(self, csr: CSRGraph,
                       edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        """Encoded edge features in CSR order, or None."""
        if edge_attr is None:
            return None
        check_edge_features(edge_attr, self.edge_dim, csr.num_edges,
                            layer_dtype(self))
        return self.edge_encoder(csr.to_csr_order(edge_attr))

    @property
    def _statistics(self) -> Optional[List[str]]:
        r"""The aggregators' statistics when :math:`M` is one linear map and
        every aggregator is a statistic (mean, min, max, std, ...), the case
        :meth:`_aggregate_decomposed` serves; else None."""
        if len(self.pre_nns[0]) != 1:
            return None
        return self.aggr_module.statistics

    def _first_layers(self, x: Tensor):
        r"""Every tower's ``W_i x + b`` and ``W_j x`` of its first linear
        map, ``(N, T, F)`` each, and its :math:`W_e` (a list, or None)."""
        firsts = [nn[0] for nn in self.pre_nns]
        w_dst, w_src, w_edge = zip(*(first.weight.split(
            [self.F_in, self.F_in, first.weight.size(1) - 2 * self.F_in],
            dim=1) for first in firsts))
        biases = None if firsts[0].bias is None else [f.bias for f in firsts]
        return (self._tower_products(x, list(w_dst), biases),
                self._tower_products(x, list(w_src)),
                None if self.edge_dim is None else list(w_edge))

    def _aggregate_decomposed(self, x: Tensor, csr: CSRGraph,
                              edge_feat: Optional[Tensor],
                              by_degree: bool = False) -> Tensor:
        r"""Statistics of messages :math:`s_i + z_{j,i}` with node shift
        :math:`s_i = W_i \mathbf{x}_i + b` and :math:`z_{j,i} = W_j
        \mathbf{x}_j (+ W_e \mathbf{e}_{j,i})`: of node values by sparse
        reductions when edges have no features (in ``csr.by_degree``'s row
        order with ``by_degree``: the shift permuted, not the ``N x A F``
        statistics), else of ``E x F`` values :math:`z`, then shifted
        (:func:`gnnagg.ops.shift_stats`)."""
        shift, src, w_edge = self._first_layers(x)
        statistics = self._statistics
        assert statistics is not None  # the decomposed path's condition
        graph = csr.by_degree if by_degree else csr
        if edge_feat is None:
            stats = neighbor_stats(src, graph, statistics)
        else:
            z = src.index_select(0, csr.col)
            z += self._tower_products(edge_feat.unsqueeze(1), w_edge)
            stats = segment_stats(z, csr.rowptr, statistics)
        if by_degree:
            _, order, position, _ = csr.degree_groups
            shift = permute_rows(shift, order, position)
        stats = shift_stats(stats, shift, graph.degree)
        return torch.cat([stats[s] for s in statistics], dim=-1)

    def _messages(self, x: Tensor, csr: CSRGraph,
                  edge_feat: Optional[Tensor]) -> Tensor:
        r"""Messages of every tower in CSR order, ``(E, T, F)``: :math:`M`
        applied to :math:`W_i \mathbf{x}_i + W_j \mathbf{x}_j + W_e
        \mathbf{e}_{j,i} + b` with the node terms computed per node."""
        dst_term, src_term, w_edge = self._first_layers(x)
        h = src_term.index_select(0, csr.col)
        h += dst_term.index_select(0, csr.row)
        if edge_feat is not None:
            h += self._tower_products(edge_feat.unsqueeze(1), w_edge)
        return torch.stack([nn[1:](h_t) for nn, h_t in zip(self.pre_nns,
                                                           h.unbind(1))],
                           dim=1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, towers={self.towers}, "
                f"edge_dim={self.edge_dim})")

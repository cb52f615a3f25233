r"""The PNA repository's simple layer: degree-scaled aggregations of the
neighbours' states, then one linear map (Corso et al., 2020)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import Adj, PairTensor, SparseTensor

from ...ops import MAX_DEGREE_GROUPS, CSRGraph, csr_view, neighbor_stats
from ..aggr import DegreeScalerAggregation, SegmentAggregation
from .fusion import MESSAGE_HOOKS, PROPAGATE_HOOKS, message_path_needed
from .inputs import check_features, edge_index_and_sizes, layer_dtype


class PNASimpleConv(MessagePassing):
    r"""The layer of the PNA repository's ogbg-molhiv network
    (``PNASimpleLayer`` of `"Principal Neighbourhood Aggregation for Graph
    Nets" <https://arxiv.org/abs/2004.05718>`_, Corso et al., 2020): PNA's
    scaled aggregations of the neighbours' states, no pre-transformation,
    then one linear map:

    .. math::
        \mathbf{x}_i^{\prime} = \mathbf{W} \Big[\, \big\Vert_{s \in S}
        s(d_i) \big\Vert_{a \in A} \underset{j \in \mathcal{N}(i)}{a}
        \mathbf{x}_j \Big] + \mathbf{b}

    The same function as PyG's ``Linear(SimpleConv(aggr=
    DegreeScalerAggregation(aggregators, scalers, deg))(x))``, with the
    same parameters (``aggr_module``'s buffers, ``lin.weight``,
    ``lin.bias``). gnnagg computes it without the ``N x |S| |A| F`` input of
    the linear map: the map takes one matrix per distinct in-degree,
    :math:`\mathbf{W}_d = \sum_s s(d) \mathbf{W}_s`
    (:meth:`~gnnagg.nn.aggr.DegreeScalerAggregation.scaled_linear`), and
    aggregations that are statistics (mean, min, max, std, ...) come from
    node values without the ``E x F`` gathered messages
    (:func:`gnnagg.ops.neighbor_stats`). PyG's message path (``message``,
    then ``aggr_module``, then ``lin``) runs instead in explain mode, with
    message, aggregate or propagate hooks, ``decomposed_layers > 1``,
    reversed ``flow`` or a ``SparseTensor``.

    Args:
        in_channels (int): input size (``-1``: inferred at the first call).
        out_channels (int): output size.
        aggregators (list of str): names from ``sum, mean, min, max, var,
            std, softmax, powermean`` (and any PyG aggregation name).
        scalers (list of str): names from ``identity, amplification,
            attenuation, linear, inverse_linear``.
        deg (Tensor): in-degree histogram of the training graphs
            (:func:`~gnnagg.nn.aggr.degree_histogram`).
        train_norm (bool, optional): learn the scalers' degree normalisers.
            (default: ``False``)
        bias (bool, optional): learn :math:`\mathbf{b}`.
            (default: ``True``)
        aggr_kwargs (list of dict, optional): constructor arguments of the
            aggregators. (default: ``None``)
        **kwargs: :class:`~torch_geometric.nn.conv.MessagePassing` options.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_{in}), (|\mathcal{V}_t|, *))`, edge
          indices :math:`(2, |\mathcal{E}|)`
        - **output:** :math:`(|\mathcal{V}_t|, F_{out})`

    Example::

        >>> deg = torch.tensor([1, 3, 1])  # nodes of in-degree 0, 1, 2
        >>> conv = PNASimpleConv(16, 32, ["mean", "max"],
        ...                      ["identity", "amplification"], deg)
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    #: distinct in-degrees up to which ``lin`` takes one matrix per degree
    #: (:func:`~gnnagg.ops.degree_scaled_linear`)
    MAX_DEGREE_GROUPS = MAX_DEGREE_GROUPS

    def __init__(self, in_channels: int, out_channels: int,
                 aggregators: List[str], scalers: List[str], deg: Tensor,
                 train_norm: bool = False, bias: bool = True,
                 aggr_kwargs: Optional[List[Dict[str, Any]]] = None,
                 **kwargs):
        aggr = DegreeScalerAggregation(aggregators, scalers, deg, train_norm,
                                       aggr_kwargs)
        super().__init__(aggr=aggr, **kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.aggregators, self.scalers = list(aggregators), aggr.scaler
        width = len(self.aggregators) * len(self.scalers) * in_channels
        self.lin = Linear(-1 if in_channels < 0 else width, out_channels,
                          bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.lin.reset_parameters()

    def forward(self, x: Union[Tensor, PairTensor], edge_index: Adj,
                size=None) -> Tensor:
        pair = (x, x) if isinstance(x, Tensor) else x
        if message_path_needed(self, MESSAGE_HOOKS + PROPAGATE_HOOKS) or \
                isinstance(edge_index, SparseTensor) or \
                self.lin.in_channels < 0:  # the first call sizes lin
            # propagate_type: (x: PairTensor)
            return self.lin(self.propagate(edge_index, x=pair, size=size))
        source, target = pair
        check_features("x", source, self.in_channels, layer_dtype(self))
        csr = csr_view(*edge_index_and_sizes(
            edge_index, source.size(0),
            None if target is None else target.size(0), size))
        # grouped by degree, the statistics are computed in group order
        grouped = self.aggr_module.groups_by_degree(self.lin.weight, csr,
                                                    self.MAX_DEGREE_GROUPS)
        aggregated = self._aggregate_unscaled(
            source, csr.by_degree if grouped else csr)
        out = self.aggr_module.scaled_linear(
            aggregated, self.lin.weight, csr, self.MAX_DEGREE_GROUPS,
            rows_by_degree=grouped)
        return out if self.lin.bias is None else out + self.lin.bias

    def _aggregate_unscaled(self, x: Tensor, csr: CSRGraph) -> Tensor:
        """The inner aggregations of ``x``'s rows over every destination's
        in-neighbours, ``(N_dst, |A| F)``, before the scalers."""
        statistics = self.aggr_module.statistics
        if statistics is not None:
            stats = neighbor_stats(x, csr, statistics)
            return torch.cat([stats[s] for s in statistics], dim=-1)
        inner = self.aggr_module.aggr
        messages = x.index_select(0, csr.col)
        if isinstance(inner, SegmentAggregation):
            return inner.reduce_segments(messages, csr)
        return inner(messages, csr.row, dim_size=csr.num_dst)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, aggregators={self.aggregators}, "
                f"scalers={self.scalers})")

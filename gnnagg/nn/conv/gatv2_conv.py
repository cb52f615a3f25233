r"""GATv2's dynamic attention (Brody, Alon, Yahav, 2022) on gnnagg's kernels."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from ...ops import gatv2_score
from .attention import AttentionConv


class GATv2Conv(AttentionConv):
    r"""The dynamic attention operator of "How Attentive are Graph Attention
    Networks?".

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha_{i,j}\mathbf{\Theta}_{s}\mathbf{x}_{j}, \qquad
        \alpha_{i,j} = \mathrm{softmax}_j\Big(\mathbf{a}^{\top}
        \mathrm{LeakyReLU}\big(\mathbf{\Theta}_{s} \mathbf{x}_j
        + \mathbf{\Theta}_{t} \mathbf{x}_i + \mathbf{\Theta}_{e}
        \mathbf{e}_{j,i}\big)\Big)

    Applying :math:`\mathbf{a}` after the non-linearity makes the ranking of
    neighbours depend on the query node (dynamic attention), which GAT's
    static score cannot express.

    A drop-in replacement for :class:`torch_geometric.nn.GATv2Conv` (same
    arguments and parameter names). The ``E x H x C`` pre-activation is
    formed chunk by chunk and recomputed in backward
    (:func:`gnnagg.ops.gatv2_score`), never kept alive; the weighted sum is a
    sparse matrix product per head. Arguments as in
    :class:`gnnagg.nn.GATConv`, plus ``share_weights`` (one matrix for
    :math:`\mathbf{\Theta}_s` and :math:`\mathbf{\Theta}_t`).
    """

    def __init__(self, in_channels: Union[int, Tuple[int, int]],
                 out_channels: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0,
                 add_self_loops: bool = True, edge_dim: Optional[int] = None,
                 fill_value: Union[float, Tensor, str] = "mean",
                 bias: bool = True, share_weights: bool = False,
                 residual: bool = False, **kwargs):
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.add_self_loops = add_self_loops
        self.edge_dim = edge_dim
        self.fill_value = fill_value
        self.residual = residual
        self.share_weights = share_weights

        src_in, dst_in = ((in_channels, in_channels)
                          if isinstance(in_channels, int) else in_channels)
        self.lin_l = Linear(src_in, heads * out_channels, bias=bias,
                            weight_initializer="glorot")
        self.lin_r = self.lin_l if share_weights else Linear(
            dst_in, heads * out_channels, bias=bias,
            weight_initializer="glorot")
        self.att = Parameter(torch.empty(1, heads, out_channels))
        self.lin_edge = None if edge_dim is None else Linear(
            edge_dim, heads * out_channels, bias=False,
            weight_initializer="glorot")
        self._init_residual_and_bias(dst_in, residual, bias)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for lin in (self.lin_l, self.lin_r, self.lin_edge, self.res):
            if lin is not None:
                lin.reset_parameters()
        glorot(self.att)
        zeros(self.bias)

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]], edge_index,
                edge_attr: Optional[Tensor] = None,
                return_attention_weights: Optional[bool] = None):
        r"""Args as in :meth:`gnnagg.nn.GATConv.forward` (no ``size``: both
        node sets are given)."""
        H, C = self.heads, self.out_channels
        x_src, x_dst = self._split_input(x)
        if x_dst is None:
            raise ValueError("GATv2Conv needs destination features: pass "
                             "x=(x_src, x_dst)")
        res = None if self.res is None else self.res(x_dst)
        h_src = self.lin_l(x_src).view(-1, H, C)
        h_dst = (h_src if self.share_weights and x_dst is x_src else
                 self.lin_r(x_dst).view(-1, H, C))
        csr = self._graph(edge_index, h_src.size(0), h_dst.size(0))
        edge_feat = self._edge_features(csr, edge_attr)
        scores = gatv2_score(
            h_src, h_dst, self.att.view(H, C), csr, self.negative_slope,
            edge_feat, None if edge_feat is None else self.lin_edge.weight)
        out, alpha = self._aggregate(scores, h_src, csr)
        out = self._merge_heads(out, res)
        if return_attention_weights:
            return out, self._attention_weights(edge_index, csr, alpha)
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, heads={self.heads})")

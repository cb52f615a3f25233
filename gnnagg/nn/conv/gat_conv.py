r"""Graph attention (Velickovic et al., 2018) on gnnagg's CSR kernels."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from .attention import AttentionConv


class GATConv(AttentionConv):
    r"""The graph attentional operator of "Graph Attention Networks".

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha_{i,j}\mathbf{\Theta}_{s}\mathbf{x}_{j}, \qquad
        \alpha_{i,j} = \mathrm{softmax}_j\Big(\mathrm{LeakyReLU}\big(
        \mathbf{a}^{\top}_{s}\mathbf{\Theta}_{s}\mathbf{x}_j +
        \mathbf{a}^{\top}_{t}\mathbf{\Theta}_{t}\mathbf{x}_i +
        \mathbf{a}^{\top}_{e}\mathbf{\Theta}_{e}\mathbf{e}_{j,i}\big)\Big)

    per head, heads concatenated (``concat=True``) or averaged.

    A drop-in replacement for :class:`torch_geometric.nn.GATConv`: the same
    arguments and parameter names, so ``load_state_dict`` of a PyG layer
    gives the same function. The score is static, a sum of per-node terms,
    so only ``E x H`` scores are formed per edge; the edge term folds
    :math:`\mathbf{a}_e^\top\mathbf{\Theta}_e` into one ``D x H`` matrix; the
    weighted sum is a sparse matrix product per head
    (:func:`gnnagg.ops.weighted_aggregate`).

    Args:
        in_channels: input size, or ``(source, destination)`` sizes for a
            bipartite graph.
        out_channels: output size per head.
        heads: number of attention heads.
        concat: concatenate heads (else average them).
        negative_slope: LeakyReLU slope.
        dropout: dropout probability of the attention coefficients.
        add_self_loops: drop existing self-loops and add one per node.
        edge_dim: edge feature size, if edges have features.
        fill_value: edge features of added self-loops: a number, a tensor,
            or a reduction (``"mean"``, ``"add"``, ``"min"``, ``"max"``,
            ``"mul"``) of the features of edges entering the node.
        bias: learn an additive bias.
        residual: add a learnable skip connection.
    """

    def __init__(self, in_channels: Union[int, Tuple[int, int]],
                 out_channels: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0,
                 add_self_loops: bool = True, edge_dim: Optional[int] = None,
                 fill_value: Union[float, Tensor, str] = "mean",
                 bias: bool = True, residual: bool = False, **kwargs):
        kwargs.setdefault("aggr", "add")
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

        self.lin = self.lin_src = self.lin_dst = None
        if isinstance(in_channels, int):
            self.lin = Linear(in_channels, heads * out_channels, bias=False,
                              weight_initializer="glorot")
        else:
            self.lin_src = Linear(in_channels[0], heads * out_channels, False,
                                  weight_initializer="glorot")
            self.lin_dst = Linear(in_channels[1], heads * out_channels, False,
                                  weight_initializer="glorot")
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = Parameter(torch.empty(1, heads, out_channels))
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, bias=False,
                                   weight_initializer="glorot")
            self.att_edge = Parameter(torch.empty(1, heads, out_channels))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        self._init_residual_and_bias(
            in_channels if isinstance(in_channels, int) else in_channels[1],
            residual, bias)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for lin in (self.lin, self.lin_src, self.lin_dst, self.lin_edge,
                    self.res):
            if lin is not None:
                lin.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        glorot(self.att_edge)
        zeros(self.bias)

    def forward(self, x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
                edge_index, edge_attr: Optional[Tensor] = None,
                size: Optional[Tuple[int, int]] = None,
                return_attention_weights: Optional[bool] = None):
        r"""Args:
            x: node features ``(N, F)`` or a pair ``(x_src, x_dst)``.
            edge_index: ``(2, E)`` indices, an ``EdgeIndex``, or a
                transposed torch.sparse adjacency.
            edge_attr: ``(E, edge_dim)`` edge features.
            size: ``(num_src, num_dst)`` of a bipartite graph.
            return_attention_weights: also return ``(edge_index, alpha)``.
        """
        H, C = self.heads, self.out_channels
        x_src, x_dst = self._split_input(x)
        res = None if self.res is None or x_dst is None else self.res(x_dst)
        lin_src = self.lin if self.lin is not None else self.lin_src
        lin_dst = self.lin if self.lin is not None else self.lin_dst
        h_src = lin_src(x_src).view(-1, H, C)
        h_dst = None
        if x_dst is not None:
            h_dst = (h_src if x_dst is x_src and lin_dst is lin_src else
                     lin_dst(x_dst).view(-1, H, C))
        num_dst = h_src.size(0) if h_dst is None else h_dst.size(0)
        csr = self._graph(edge_index, h_src.size(0), num_dst, size)

        scores = (h_src * self.att_src).sum(-1).index_select(0, csr.col)
        if h_dst is not None:
            scores = scores + (h_dst * self.att_dst).sum(-1).index_select(
                0, csr.row)
        edge_feat = self._edge_features(csr, edge_attr)
        if edge_feat is not None:
            # a_e^T (W_e e) = e^T (W_e^T a_e): one (D, H) matrix for all edges
            att_edge = (self.lin_edge.weight.view(H, C, -1) *
                        self.att_edge.view(H, C, 1)).sum(1)
            scores = scores + edge_feat @ att_edge.t()
        scores = F.leaky_relu(scores, self.negative_slope)
        out, alpha = self._aggregate(scores, h_src, csr)
        out = self._merge_heads(out, res)
        if return_attention_weights:
            return out, self._attention_weights(edge_index, csr, alpha)
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, heads={self.heads})")

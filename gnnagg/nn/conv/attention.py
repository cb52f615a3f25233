r"""Shared plumbing of gnnagg's attention layers: input checks, the CSR view
with self-loops, head merging, and returning attention weights in PyG's
format. The layers themselves only define how scores are computed."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear

from ...ops import CSRGraph, csr_view, segment_softmax, weighted_aggregate
from .inputs import as_edge_index, check_edge_features, check_features

class AttentionConv(MessagePassing):
    r"""Base of layers that compute per-edge, per-head scores, normalise them
    with a segment softmax and aggregate with :func:`weighted_aggregate`."""

    heads: int
    out_channels: int
    concat: bool
    dropout: float
    add_self_loops: bool
    edge_dim: Optional[int]
    fill_value: Union[float, Tensor, str]

    def _init_residual_and_bias(self, dst_channels: int, residual: bool,
                                bias: bool) -> None:
        """Register ``res`` (skip connection from destination features) and
        ``bias`` as PyG's attention layers do."""
        total = self.out_channels * (self.heads if self.concat else 1)
        if residual:
            self.res = Linear(dst_channels, total, bias=False,
                              weight_initializer="glorot")
        else:
            self.register_parameter("res", None)
        if bias:
            self.bias = Parameter(torch.empty(total))
        else:
            self.register_parameter("bias", None)

    def _split_input(self, x) -> Tuple[Tensor, Optional[Tensor]]:
        """``(x_src, x_dst)`` after checking both against ``in_channels``;
        a single tensor is both (``x_dst is x_src``)."""
        src_channels, dst_channels = (
            (self.in_channels, self.in_channels)
            if isinstance(self.in_channels, int) else self.in_channels)
        if isinstance(x, Tensor):
            check_features("x", x, src_channels)
            if src_channels != dst_channels:
                raise ValueError("layer was built for bipartite input "
                                 f"{self.in_channels}; pass x=(x_src, x_dst)")
            return x, x
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise TypeError("x must be a tensor or a pair (x_src, x_dst)")
        check_features("x_src", x[0], src_channels)
        if x[1] is not None:
            check_features("x_dst", x[1], dst_channels)
        return x[0], x[1]

    def _graph(self, edge_index, num_src: int, num_dst: int,
               size: Optional[Tuple[int, int]] = None) -> CSRGraph:
        edge_index, sparse_size = as_edge_index(edge_index)
        if size is not None:
            num_src, num_dst = size
        elif sparse_size is not None and None not in sparse_size:
            num_src, num_dst = sparse_size
        return csr_view(edge_index, num_src, num_dst, self.add_self_loops)

    def _edge_features(self, csr: CSRGraph,
                       edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        """Edge features in CSR order (self-loop rows filled), or None."""
        if edge_attr is None:
            return None
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        check_edge_features(edge_attr, self.edge_dim, csr.num_input_edges)
        edge_attr = csr.add_loop_features(edge_attr, self.fill_value)
        return csr.to_csr_order(edge_attr)

    def _aggregate(self, scores: Tensor, x_src: Tensor,
                   csr: CSRGraph) -> Tuple[Tensor, Tensor]:
        """Softmax, dropout and weighted sum: ``(out (N, H, C), alpha)``."""
        alpha = segment_softmax(scores, csr)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        return weighted_aggregate(alpha, x_src, csr), alpha

    def _merge_heads(self, out: Tensor, res: Optional[Tensor]) -> Tensor:
        out = (out.reshape(-1, self.heads * self.out_channels)
               if self.concat else out.mean(dim=1))
        if res is not None:
            out = out + res
        if self.bias is not None:
            out = out + self.bias
        return out

    @staticmethod
    def _attention_weights(edge_index, csr: CSRGraph, alpha: Tensor):
        """PyG's ``(edge_index, alpha)`` in edge order, or for a sparse input
        the adjacency with ``alpha`` as values."""
        alpha = csr.to_edge_order(alpha)
        loops_edge_index = csr.edge_index()
        if isinstance(edge_index, Tensor) and \
                edge_index.layout != torch.strided:
            dst_src = loops_edge_index.flip(0)
            adj = torch.sparse_coo_tensor(dst_src, alpha, (
                csr.num_dst, csr.num_src) + alpha.shape[1:]).coalesce()
            if edge_index.layout == torch.sparse_csr:
                dst, src = adj.indices()
                crow = torch.zeros(csr.num_dst + 1, dtype=torch.long,
                                   device=dst.device)
                torch.cumsum(torch.bincount(dst, minlength=csr.num_dst), 0,
                             out=crow[1:])
                adj = torch.sparse_csr_tensor(crow, src, adj.values(),
                                              adj.shape)
            return adj, alpha
        return loops_edge_index, alpha

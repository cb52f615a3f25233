r"""Shared plumbing of gnnagg's attention layers: input checks, the CSR view
with self-loops, head merging, and returning attention weights in PyG's
format. The layers themselves only define how scores are computed."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing

from ...debug import check_finite
from ...ops import CSRGraph, csr_view, segment_softmax, weighted_aggregate

_EDGE_INDEX_ATTR = "_gnnagg_edge_index"


def _as_edge_index(edge_index) -> Tuple[Tensor, Optional[Tuple[int, int]]]:
    """``(edge_index, (num_src, num_dst) or None)`` for a ``(2, E)`` tensor,
    an :class:`EdgeIndex`, or a transposed torch.sparse adjacency (rows =
    destinations), as PyG's layers accept."""
    if isinstance(edge_index, EdgeIndex):
        return edge_index.as_tensor(), edge_index.sparse_size()
    if not isinstance(edge_index, Tensor):
        raise TypeError("edge_index must be a LongTensor of shape (2, E), an "
                        "EdgeIndex or a torch.sparse adjacency, got "
                        f"{type(edge_index).__name__}")
    if edge_index.layout == torch.strided:
        return edge_index, None
    cached = getattr(edge_index, _EDGE_INDEX_ATTR, None)
    if cached is None:
        coo = edge_index.to_sparse_coo().coalesce()
        dst, src = coo.indices()
        cached = torch.stack([src, dst])
        setattr(edge_index, _EDGE_INDEX_ATTR, cached)
    return cached, (edge_index.size(1), edge_index.size(0))


def check_features(name: str, x: Tensor, channels: int) -> None:
    """``ValueError`` unless ``x`` is a float ``(N, channels)`` matrix."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got "
                        f"{type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got "
                         f"dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (num_nodes, {channels}), "
                         f"got {tuple(x.shape)}")
    if x.size(1) != channels:
        raise ValueError(f"{name} has {x.size(1)} features per node, but the "
                         f"layer was built for {channels}")
    check_finite(name, x)


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
        edge_index, sparse_size = _as_edge_index(edge_index)
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
        if self.edge_dim is None:
            raise ValueError("edge_attr was given, but the layer was built "
                             "without edge_dim")
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        if edge_attr.size(0) != csr.num_input_edges:
            raise ValueError(f"edge_attr has {edge_attr.size(0)} rows, but "
                             f"edge_index has {csr.num_input_edges} edges")
        if edge_attr.size(1) != self.edge_dim:
            raise ValueError(f"edge_attr has {edge_attr.size(1)} features, "
                             f"but the layer was built for {self.edge_dim}")
        check_finite("edge_attr", edge_attr)
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

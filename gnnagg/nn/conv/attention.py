r"""What gnnagg's attention layers share: when the fused CSR path may run,
the fused ``message_and_aggregate``, input checks, the CSR view with
self-loops, head merging, and attention weights in PyG's format. The layers
themselves only define how scores are computed."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.utils import cumsum
from torch_geometric.utils import softmax as pyg_softmax

from ...ops import (CSRGraph, csr_of_adjacency, csr_view, segment_softmax,
                    weighted_aggregate)
from ..functional import dropout
from .fusion import (FUSED_PRODUCT_HOOKS, FusedMessagePassing, has_hooks,
                     message_path_needed)
from .inputs import (check_edge_features, check_features,
                     edge_index_and_sizes, layer_dtype)
from .loop_features import self_loop_edge_features


class AttentionConv(FusedMessagePassing):
    r"""Mixin of attention layers that derive from PyG's namesake: PyG's
    constructor, parameters and ``forward`` (the message path), plus a
    fused path on gnnagg's CSR kernels.

    The fused path computes the scores on the graph's CSR view and
    aggregates with one sparse product per head (no ``E x H x C`` message
    tensor). With propagate hooks registered it runs through
    :meth:`propagate` on that view (an :class:`~torch_geometric.EdgeIndex`
    sorted by destination), whose :meth:`message_and_aggregate` is that
    product, so the hooks fire. It is taken exactly when PyG's layer
    would give the same result through it; otherwise (see
    :func:`message_path_needed`, and ``aggr`` other than ``"add"``) the
    layer runs PyG's ``forward`` unchanged, so explainers, message hooks,
    ``flow`` and ``aggr`` behave as with PyG's class.
    """

    SUPPORTS_FUSED_EDGE_INDEX = True

    heads: int
    out_channels: int
    concat: bool
    dropout: float
    add_self_loops: bool
    edge_dim: Optional[int]
    fill_value: Union[float, Tensor, str]

    @property
    def fuse(self) -> bool:
        """Whether :meth:`propagate` may call :meth:`message_and_aggregate`
        (PyG reads this attribute; while ``MessagePassing.__init__`` runs,
        only whether the layer implements it)."""
        implemented = self._implements_fused
        if "_decomposed_layers" not in self.__dict__:
            return implemented
        return implemented and self.aggr in ("add", "sum") and \
            not message_path_needed(self)

    @fuse.setter
    def fuse(self, value: bool) -> None:
        # PyG's __setstate__ reads the pickled __dict__'s "fuse"; the
        # getter reads another name, since dynamo (torch 2.11) resolves
        # self.__dict__["fuse"] through this property again, endlessly
        self.__dict__["fuse"] = value
        self._implements_fused = value

    def _through_propagate(self) -> bool:
        """Whether the fused path must go through :meth:`propagate` (on the
        CSR view as an ``EdgeIndex``) because propagate or
        message-and-aggregate hooks are registered; otherwise it calls the
        kernels directly (less Python per call, and what ``torch.compile``
        traces)."""
        return has_hooks(self, FUSED_PRODUCT_HOOKS)

    def message_and_aggregate(self, edge_index, x, alpha: Tensor) -> Tensor:
        r""":math:`\sum_j \alpha_{ji,h} \mathbf{x}_{j,h}` per head as sparse
        products on the CSR view of ``edge_index`` (an ``EdgeIndex`` sorted
        by destination or a transposed sparse adjacency)."""
        csr, to_csr_order = csr_of_adjacency(edge_index)
        if to_csr_order is not None:
            alpha = alpha.index_select(0, to_csr_order)
        x_src = x[0] if isinstance(x, (tuple, list)) else x
        return weighted_aggregate(alpha, x_src, csr)

    def _softmax_dropout(self, scores: Tensor, index: Tensor,
                         ptr: Optional[Tensor],
                         dim_size: Optional[int]) -> Tensor:
        """Softmax over each destination's edges (gnnagg's segment kernel
        when edges come grouped, ``ptr`` given; else PyG's), then dropout."""
        if ptr is not None:
            alpha = segment_softmax(scores, ptr, index)
        else:
            alpha = pyg_softmax(scores, index, None, dim_size)
        return dropout(alpha, self.dropout, self.training)

    def _split_input(self, x) -> Tuple[Tensor, Optional[Tensor]]:
        """``(x_src, x_dst)`` after checking both against ``in_channels``
        (``-1``: lazy, any width); a single tensor is both."""
        src_channels, dst_channels = (
            (self.in_channels, self.in_channels)
            if isinstance(self.in_channels, int) else self.in_channels)
        dtype = layer_dtype(self)
        if isinstance(x, Tensor):
            check_features("x", x, src_channels, dtype)
            if src_channels != dst_channels:
                raise ValueError("layer was built for bipartite input "
                                 f"{self.in_channels}; pass x=(x_src, x_dst)")
            return x, x
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise TypeError("x must be a tensor or a pair (x_src, x_dst)")
        check_features("x_src", x[0], src_channels, dtype)
        if x[1] is not None:
            check_features("x_dst", x[1], dst_channels, dtype)
        return x[0], x[1]

    def _graph(self, edge_index, num_src: int, num_dst: Optional[int],
               size: Optional[Tuple[int, int]] = None,
               kept_edges: Optional[Tensor] = None) -> CSRGraph:
        edge_index, num_src, num_dst = edge_index_and_sizes(
            edge_index, num_src, num_dst, size)
        return csr_view(edge_index, num_src, num_dst, self.add_self_loops,
                        kept_edges)

    def _loops_found_in_forward(self, edge_index) -> bool:
        """Whether ``forward`` finds the edges that are not self-loops
        itself: while ``torch.compile`` traces a plain ``edge_index`` with
        self-loops to drop. Their number is data and splits the graph; found
        in ``forward``'s own frame it splits it once, where found in the CSR
        build it splits every frame on the way there (PyG's layers: twice).
        """
        return (torch.compiler.is_compiling() and self.add_self_loops and
                isinstance(edge_index, Tensor) and
                edge_index.layout == torch.strided)

    def _edge_features(self, csr: CSRGraph,
                       edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        """Edge features in CSR order (self-loop rows filled), or None."""
        if edge_attr is None:
            return None
        if isinstance(edge_attr, Tensor) and edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        check_edge_features(edge_attr, self.edge_dim, csr.num_input_edges,
                            layer_dtype(self))
        edge_attr = self_loop_edge_features(csr, edge_attr, self.fill_value)
        return csr.to_csr_order(edge_attr)

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
                crow = cumsum(torch.bincount(dst, minlength=csr.num_dst))
                adj = torch.sparse_csr_tensor(crow, src, adj.values(),
                                              adj.shape)
            return adj, alpha
        return loops_edge_index, alpha

r"""TANGNN's layer: neighbourhood aggregation beside top-m global attention
(`"TANGNN: a Concise, Scalable and Effective Graph Neural Networks with
Top-m Attention Mechanism for Graph Representation Learning"
<https://arxiv.org/abs/2411.15458>`_, E et al., 2024)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import cumsum

from ...ops import CSRGraph, csr_view, neighbor_stats, segment_topm
from .inputs import check_features, edge_index_and_sizes, layer_dtype


def _graph_segments(batch: Optional[Tensor], num_nodes: int,
                    device) -> Tensor:
    """Offsets of the graphs of a batch (one graph when ``batch`` is None)."""
    if batch is None:
        return torch.tensor([0, num_nodes], device=device)
    if not isinstance(batch, Tensor) or batch.is_floating_point() or \
            batch.is_complex() or batch.dtype == torch.bool:
        raise TypeError("batch must be an integer tensor of graph ids, got "
                        f"{getattr(batch, 'dtype', type(batch).__name__)}")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"batch must hold one graph id per node "
                         f"({num_nodes}), got shape {tuple(batch.shape)}")
    if batch.numel() and bool((batch.diff() < 0).any()):
        raise ValueError("batch must be sorted (as PyG's loaders make it)")
    if batch.numel() and int(batch[0]) < 0:
        raise ValueError(f"batch holds a negative graph id ({int(batch[0])})")
    return cumsum(torch.bincount(batch) if batch.numel()
                  else batch.new_zeros(1))


class TANGNNConv(MessagePassing):
    r"""The layer of `"TANGNN: a Concise, Scalable and Effective Graph Neural
    Networks with Top-m Attention Mechanism for Graph Representation
    Learning" <https://arxiv.org/abs/2411.15458>`_ (E et al., 2024): two
    branches, combined by a linear map of their concatenation:

    .. math::
        \mathbf{h}^{(1)}_i = \mathbf{W}_s \mathbf{x}_i + \mathbf{W}_n
        \operatorname{mean}_{j \in S(i)} \mathbf{x}_j, \qquad
        \mathbf{h}^{(2)}_i = \mathbf{W}_o \big\Vert_h \sum_{v \in T}
        \operatorname{softmax}_v\Big(\frac{\mathbf{q}_{i,h}^\top
        \mathbf{k}_{v,h}}{\sqrt{d}}\Big) s_v \mathbf{v}_{v,h}

    :math:`S(i)`: the in-neighbours of :math:`i` (at most ``num_neighbors``
    of them, drawn uniformly in training); :math:`T`: the ``m`` vertices of
    :math:`i`'s graph with the highest :math:`s_v = \cos(\mathbf{x}_v,
    \mathbf{a})` for a learned auxiliary vector :math:`\mathbf{a}`;
    queries from every node, keys and values from :math:`T`. Scaling the
    values by :math:`s_v` lets the selection vector learn. Output
    :math:`\mathbf{W}[\mathbf{h}^{(1)} \Vert \mathbf{h}^{(2)}]`
    (+ :math:`\mathbf{W}_r \mathbf{x}_i` with ``residual``). Cost
    :math:`O(EF + NmF)`: no ``N x N`` tensor is formed.

    Args:
        in_channels (int): input feature size.
        out_channels (int): output feature size.
        m (int): vertices attended to per graph.
        num_neighbors (int, optional): neighbours sampled per node in
            training (all of them if :obj:`None`). (default: :obj:`None`)
        heads (int, optional): attention heads, each of size
            ``out_channels``. (default: :obj:`1`)
        residual (bool, optional): add a linear skip connection.
            (default: :obj:`True`)
        **kwargs: :class:`~torch_geometric.nn.conv.MessagePassing` options.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, edge
          indices :math:`(2, |\mathcal{E}|)`, ``batch`` (graph id of each
          node, sorted) :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, F_{out})`

    Example::

        >>> conv = TANGNNConv(16, 32, m=2)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])
        >>> conv(x, edge_index).shape
        torch.Size([5, 32])
    """

    def __init__(self, in_channels: int, out_channels: int, m: int,
                 num_neighbors: Optional[int] = None, heads: int = 1,
                 residual: bool = True, **kwargs):
        super().__init__(aggr="mean", **kwargs)
        if m < 1 or heads < 1 or (num_neighbors is not None and
                                  num_neighbors < 1):
            raise ValueError("m, heads and num_neighbors must be positive")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.m, self.num_neighbors, self.heads = m, num_neighbors, heads
        self.lin_self = Linear(in_channels, out_channels)
        self.lin_neighbors = Linear(in_channels, out_channels, bias=False)
        self.aux = Parameter(torch.empty(in_channels))
        self.lin_query = Linear(in_channels, heads * out_channels)
        self.lin_key = Linear(in_channels, heads * out_channels)
        self.lin_value = Linear(in_channels, heads * out_channels)
        self.lin_attention = Linear(heads * out_channels, out_channels)
        self.lin_out = Linear(2 * out_channels, out_channels)
        self.res = (Linear(in_channels, out_channels, bias=False)
                    if residual else None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for lin in (self.lin_self, self.lin_neighbors, self.lin_query,
                    self.lin_key, self.lin_value, self.lin_attention,
                    self.lin_out, self.res):
            if lin is not None:
                lin.reset_parameters()
        bound = 1 / math.sqrt(self.in_channels)
        torch.nn.init.uniform_(self.aux, -bound, bound)

    def forward(self, x: Tensor, edge_index,
                batch: Optional[Tensor] = None) -> Tensor:
        """``x``: ``(N, in_channels)``; ``batch``: graph id of every node
        (sorted), for mini-batches of graphs."""
        check_features("x", x, self.in_channels, layer_dtype(self))
        csr = csr_view(*edge_index_and_sizes(edge_index, x.size(0),
                                             x.size(0)))
        local = self.lin_self(x) + self._neighbor_mean(x, csr)
        out = self.lin_out(torch.cat([local, self._global_attention(
            x, _graph_segments(batch, x.size(0), x.device))], dim=-1))
        return out if self.res is None else out + self.res(x)

    def _neighbor_mean(self, x: Tensor, csr: CSRGraph) -> Tensor:
        r""":math:`\mathbf{W}_n \operatorname{mean}_j \mathbf{x}_j`, averaged
        on the narrower side: :math:`\operatorname{mean}_j \mathbf{W}_n
        \mathbf{x}_j` when the layer narrows the features (the map is
        linear, so both are the same)."""
        sampled = self._sampled(csr)
        if self.in_channels > self.out_channels:
            return neighbor_stats(self.lin_neighbors(x), sampled,
                                   ["mean"])["mean"]
        return self.lin_neighbors(neighbor_stats(x, sampled,
                                                   ["mean"])["mean"])

    def _sampled(self, csr: CSRGraph) -> CSRGraph:
        """At most ``num_neighbors`` uniformly drawn in-edges per node in
        training; the whole graph otherwise."""
        if not self.training or self.num_neighbors is None or \
                csr.max_degree <= self.num_neighbors:
            return csr
        keep = segment_topm(torch.rand(csr.num_edges, device=csr.col.device),
                            csr.rowptr, self.num_neighbors)
        counts = torch.minimum(csr.degree,
                               torch.full_like(csr.degree, self.num_neighbors))
        return CSRGraph(cumsum(counts), csr.col[keep], csr.perm[keep], csr.num_src,
                        csr.num_dst)

    def _global_attention(self, x: Tensor, graph_ptr: Tensor) -> Tensor:
        H, C = self.heads, self.out_channels
        # cos(x_v, a) without normalising x (a copy of the input otherwise)
        scores = (x @ F.normalize(self.aux, dim=0)) / \
            x.norm(dim=-1).clamp(min=1e-12)
        num_graphs = graph_ptr.numel() - 1
        if num_graphs == 1:  # the m best of all: a size known in advance
            selected = torch.argsort(scores.detach(), descending=True,
                                     stable=True)[:self.m].sort().values
        else:
            selected = segment_topm(scores.detach(), graph_ptr,
                                    self.m).nonzero().view(-1)
        keys = self.lin_key(x[selected]).view(-1, H, C)
        values = (self.lin_value(x[selected]) *
                  scores[selected].unsqueeze(-1)).view(-1, H, C)
        queries = self.lin_query(x).view(-1, H, C) / math.sqrt(C)
        if num_graphs == 1:  # every node attends to the same m vertices
            attention = torch.einsum("nhc,khc->nhk", queries, keys).softmax(-1)
            out = torch.einsum("nhk,khc->nhc", attention, values)
        else:  # pad each graph's selection to m slots
            graph = torch.repeat_interleave(
                torch.arange(num_graphs, device=x.device), graph_ptr.diff())
            sel_graph = graph[selected]
            slot = torch.arange(selected.numel(), device=x.device) - \
                torch.searchsorted(sel_graph, sel_graph)
            padded_keys = keys.new_zeros(num_graphs, self.m, H, C)
            padded_values = torch.zeros_like(padded_keys)
            present = torch.zeros(num_graphs, self.m, dtype=torch.bool,
                                  device=x.device)
            padded_keys = padded_keys.index_put((sel_graph, slot), keys)
            padded_values = padded_values.index_put((sel_graph, slot), values)
            present[sel_graph, slot] = True
            logits = torch.einsum("nhc,nkhc->nhk", queries, padded_keys[graph])
            logits = logits.masked_fill(~present[graph].unsqueeze(1),
                                        float("-inf"))
            out = torch.einsum("nhk,nkhc->nhc", logits.softmax(-1),
                               padded_values[graph])
        return self.lin_attention(out.reshape(-1, H * C))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, m={self.m}, heads={self.heads})")

"""TANGNN networks for node, link and graph tasks."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import global_mean_pool

from ..nn import TANGNNConv
from ..nn.functional import dropout
from .gnn import check_node_input


class TANGNN(torch.nn.Module):
    r"""A stack of :class:`gnnagg.nn.TANGNNConv` layers (ReLU, dropout).

    The head reads the last layer, or with ``lc=True`` (TANGNN-LC) the
    concatenation of every layer's output. ``graph_level=True`` mean-pools
    the nodes of each graph first. For link prediction use :meth:`encode`
    and :meth:`decode` (dot product of the two endpoints).
    """

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int, num_layers: int = 2, m: int = 32,
                 num_neighbors: Optional[int] = None, heads: int = 1,
                 dropout: float = 0.5, lc: bool = False,
                 graph_level: bool = False,
                 encoder: Optional[torch.nn.Module] = None):
        super().__init__()
        self.encoder = encoder
        if num_layers < 1:
            raise ValueError("num_layers must be at least 1")
        self.convs = torch.nn.ModuleList(
            TANGNNConv(in_channels if i == 0 else hidden_channels,
                       hidden_channels, m, num_neighbors, heads)
            for i in range(num_layers))
        self.dropout, self.lc, self.graph_level = dropout, lc, graph_level
        self.head = torch.nn.Linear(
            hidden_channels * (num_layers if lc else 1), out_channels)

    def encode(self, x: Tensor, edge_index: Tensor,
               batch: Optional[Tensor] = None) -> Tensor:
        if self.encoder is not None:
            check_node_input(self.encoder, x)
            x = self.encoder(x)
        outputs = []
        for conv in self.convs:
            x = dropout(x, self.dropout, self.training)
            x = F.relu(conv(x, edge_index, batch))
            outputs.append(x)
        return torch.cat(outputs, dim=-1) if self.lc else x

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_attr: Optional[Tensor] = None,
                batch: Optional[Tensor] = None) -> Tensor:
        """``edge_attr`` is accepted for a uniform call and not used: TANGNN
        reads no edge features."""
        h = self.encode(x, edge_index, batch)
        if self.graph_level:
            h = global_mean_pool(h, batch)
        return self.head(dropout(h, self.dropout, self.training))

    def decode(self, z: Tensor, edge_label_index: Tensor) -> Tensor:
        """Link logits: :math:`\\langle z_u, z_v \\rangle` per pair."""
        return (z[edge_label_index[0]] * z[edge_label_index[1]]).sum(-1)

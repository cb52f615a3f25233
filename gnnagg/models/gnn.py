"""One network shape for every gnnagg aggregator, so runners compare
aggregators, not architectures."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import SAGEConv, global_mean_pool

from ..nn import GATConv, GATv2Conv, PNAConv, TANGNNConv
from ..nn.aggr import (LCMAggregation, MaxAggregation, MeanAggregation,
                       RecurrentAggregation, SumAggregation,
                       TopMAttentionAggregation)
from ..nn.conv.inputs import check_features
from ..nn.functional import dropout
from .registry import LAYER_KINDS, MODELS


def make_conv(kind: str, in_channels: int, out_channels: int,
              edge_dim: Optional[int] = None, deg: Optional[Tensor] = None,
              heads: int = 4, m: int = 32) -> torch.nn.Module:
    """A layer mapping ``in_channels`` to ``out_channels`` features, of one
    of the :data:`~gnnagg.models.registry.LAYER_KINDS`. Aggregator kinds
    (``lcm``, ``gru``, ``topm``, ``sum``, ``mean``, ``max``) are PyG's
    ``SAGEConv`` with a gnnagg aggregation as ``aggr=``."""
    if kind not in LAYER_KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; choose one of "
                         f"{', '.join(LAYER_KINDS)}")
    if kind in ("gat", "gatv2"):
        if out_channels % heads:
            raise ValueError(f"hidden size {out_channels} must be divisible "
                             f"by heads ({heads})")
        layer = GATConv if kind == "gat" else GATv2Conv
        return layer(in_channels, out_channels // heads, heads=heads,
                     edge_dim=edge_dim)
    if kind == "pna":
        if deg is None:
            raise ValueError("PNA needs the degree histogram of the training "
                             "graphs (deg=)")
        return PNAConv(in_channels, out_channels,
                       ["mean", "min", "max", "std"],
                       ["identity", "amplification", "attenuation"], deg,
                       edge_dim=edge_dim, towers=1, divide_input=False)
    if kind == "tangnn":
        return TANGNNConv(in_channels, out_channels, m=m)
    aggregation = {
        "lcm": lambda: LCMAggregation(in_channels, in_channels),
        "gru": lambda: RecurrentAggregation(in_channels, in_channels),
        "topm": lambda: TopMAttentionAggregation(in_channels, m=m),
        "sum": SumAggregation, "mean": MeanAggregation,
        "max": MaxAggregation}[kind]()
    return SAGEConv(in_channels, out_channels, aggr=aggregation)


def check_node_input(encoder: torch.nn.Module, x: Tensor) -> None:
    """Clear errors for input the first layer cannot read: a linear encoder
    takes float ``(N, in_features)`` of its dtype, OGB's ``AtomEncoder``
    integer ``(N, num_atom_features)``."""
    if isinstance(encoder, torch.nn.Linear):
        check_features("x", x, encoder.in_features, encoder.weight.dtype)
        return
    atom_features = len(getattr(encoder, "atom_embedding_list", ()))
    if atom_features and (not isinstance(x, Tensor) or x.dim() != 2 or
                          x.size(1) != atom_features or
                          x.is_floating_point()):
        raise ValueError(f"x must be integer atom features of shape (N, "
                         f"{atom_features}) (OGB's featurisation), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}")


class GNN(torch.nn.Module):
    r"""``encoder -> [conv -> BatchNorm -> ReLU -> dropout] x L -> head``
(``batch_norm=False`` leaves the BatchNorm out).

    Node tasks read the last layer; graph tasks (``graph_level``) mean-pool
    each graph first. Molecules embed atoms and bonds with OGB's
    ``AtomEncoder``/``BondEncoder`` (``molecular=True``); otherwise a linear
    map embeds the input features.
    """

    def __init__(self, conv: str, in_channels: int, hidden_channels: int,
                 out_channels: int, num_layers: int = 2, dropout: float = 0.5,
                 graph_level: bool = False, molecular: bool = False,
                 edge_dim: Optional[int] = None, deg: Optional[Tensor] = None,
                 heads: int = 4, m: int = 32, batch_norm: bool = True):
        super().__init__()
        self.graph_level, self.dropout = graph_level, dropout
        self.uses_edges = conv in MODELS and MODELS[conv].edge_features \
            and (molecular or edge_dim is not None)
        if molecular:
            from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder
            self.encoder = AtomEncoder(hidden_channels)
            self.edge_encoder = BondEncoder(hidden_channels) \
                if self.uses_edges else None
            edge_dim = hidden_channels
        else:
            self.encoder = torch.nn.Linear(in_channels, hidden_channels)
            self.edge_encoder = None
        self.convs = torch.nn.ModuleList(
            make_conv(conv, hidden_channels, hidden_channels,
                      edge_dim if self.uses_edges else None, deg, heads, m)
            for _ in range(num_layers))
        self.norms = torch.nn.ModuleList(
            torch.nn.BatchNorm1d(hidden_channels) if batch_norm
            else torch.nn.Identity() for _ in range(num_layers))
        self.head = torch.nn.Sequential(
            torch.nn.Linear(hidden_channels, hidden_channels),
            torch.nn.ReLU(), torch.nn.Linear(hidden_channels, out_channels))

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_attr: Optional[Tensor] = None,
                batch: Optional[Tensor] = None) -> Tensor:
        check_node_input(self.encoder, x)
        h = self.encoder(x)
        if self.uses_edges and edge_attr is not None:
            edge_attr = (self.edge_encoder(edge_attr)
                         if self.edge_encoder is not None else edge_attr)
        for conv, norm in zip(self.convs, self.norms):
            if self.uses_edges and edge_attr is not None:
                out = conv(h, edge_index, edge_attr)
            elif isinstance(conv, TANGNNConv):
                out = conv(h, edge_index, batch)
            else:
                out = conv(h, edge_index)
            h = dropout(F.relu(norm(out)), self.dropout, self.training)
        if self.graph_level:
            h = global_mean_pool(h, batch)
        return self.head(h)

    @torch.no_grad()
    def inference(self, x: Tensor, loader) -> Tensor:
        """Full-neighbour layer-wise inference of a node task, as OGB's
        examples do: each layer runs over every node, one batch of ``loader``
        (one hop, all in-neighbours, e.g. ``neighbor_loader(data, [-1])``)
        at a time, so memory holds one layer of node states, never a deep
        neighbourhood. Equals ``forward`` on the whole graph in eval mode."""
        if self.graph_level or self.uses_edges:
            raise ValueError("layer-wise inference is for node tasks "
                             "without edge features")
        if any(isinstance(conv, TANGNNConv) for conv in self.convs):
            raise ValueError("TANGNN's global top-m attention needs the "
                             "whole graph: evaluate with forward()")
        h = self.encoder(x)
        for conv, norm in zip(self.convs, self.norms):
            out = None
            for batch in loader:
                batch = batch.to(h.device)
                part = conv(h[batch.n_id], batch.edge_index)[:batch.batch_size]
                if out is None:
                    out = part.new_empty(h.size(0), part.size(-1))
                out[batch.n_id[:batch.batch_size]] = part
            h = F.relu(norm(out))
        return self.head(h)

"""How each registered model (:mod:`gnnagg.models.registry`) is built for a
node or graph task."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .gat import GATPaperNet
from .gnn import GNN
from .registry import check_model
from .tangnn import TANGNN


def build_model(name: str, in_channels: int, out_channels: int,
                graph_level: bool = False, molecular: bool = False,
                deg: Optional[Tensor] = None, hidden_channels: int = 64,
                num_layers: int = 2, dropout: float = 0.5, heads: int = 4,
                m: int = 32, paper_gat: bool = False,
                batch_norm: bool = True) -> torch.nn.Module:
    """Build model ``name`` for a node task or (``graph_level``) a graph
    task. ``paper_gat`` builds the GAT paper's Planetoid network for
    ``gat``/``gatv2`` (8 heads x 8 hidden, dropout 0.6)."""
    check_model(name)
    if paper_gat and name in ("gat", "gatv2"):
        return GATPaperNet(in_channels, 8, out_channels, heads=8, out_heads=1,
                   dropout=0.6, conv=name)
    if name in ("tangnn", "tangnn_lc"):
        encoder = None
        if molecular:
            from ogb.graphproppred.mol_encoder import AtomEncoder
            encoder, in_channels = AtomEncoder(hidden_channels), \
                hidden_channels
        return TANGNN(in_channels, hidden_channels, out_channels, num_layers,
                      m=m, heads=1, dropout=dropout, lc=name == "tangnn_lc",
                      graph_level=graph_level, encoder=encoder)
    return GNN(name, in_channels, hidden_channels, out_channels, num_layers,
               dropout, graph_level=graph_level, molecular=molecular, deg=deg,
               heads=heads, m=m, batch_norm=batch_norm)

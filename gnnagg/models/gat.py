"""The two-layer attention network of the GAT paper's transductive setup."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn import GATConv, GATv2Conv

ATTENTION_LAYERS = {"gat": GATConv, "gatv2": GATv2Conv}


class GAT(torch.nn.Module):
    r"""``dropout -> conv(heads x hidden, concat) -> ELU -> dropout ->
    conv(out_heads x out, averaged)``, as in Velickovic et al. (2018):
    8 heads x 8 hidden, dropout 0.6 on inputs and attention for Cora.

    Args:
        conv: ``"gat"`` (static attention) or ``"gatv2"`` (dynamic).
    """

    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int, heads: int = 8, out_heads: int = 1,
                 dropout: float = 0.6, conv: str = "gat"):
        super().__init__()
        if conv not in ATTENTION_LAYERS:
            raise ValueError(f"unknown attention layer {conv!r}; choose one "
                             f"of {sorted(ATTENTION_LAYERS)}")
        layer = ATTENTION_LAYERS[conv]
        self.dropout = dropout
        self.conv1 = layer(in_channels, hidden_channels, heads=heads,
                           dropout=dropout)
        self.conv2 = layer(hidden_channels * heads, out_channels,
                           heads=out_heads, concat=False, dropout=dropout)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)

"""PyG's GAT and PNA models on gnnagg's layers, and the two-layer attention
network of the GAT paper's transductive setup."""
from __future__ import annotations

from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.models import GAT as PyGGAT
from torch_geometric.nn.models import PNA as PyGPNA

from ..nn import GATConv, GATv2Conv, PNAConv
from ..nn.functional import dropout

ATTENTION_LAYERS = {"gat": GATConv, "gatv2": GATv2Conv}


class GAT(PyGGAT):
    r""":class:`torch_geometric.nn.models.GAT` (same arguments:
    ``GAT(in_channels, hidden_channels, num_layers, out_channels=None,
    v2=False, ...)``) built from gnnagg's :class:`~gnnagg.nn.GATConv` or
    :class:`~gnnagg.nn.GATv2Conv` (``v2=True``)."""

    def init_conv(self, in_channels: Union[int, Tuple[int, int]],
                  out_channels: int, **kwargs) -> GATConv:
        layer = GATv2Conv if kwargs.pop("v2", False) else GATConv
        heads = kwargs.pop("heads", 1)
        # PyG's rule: heads are concatenated, except in a layer that maps
        # to the model's output size
        concat = kwargs.pop("concat", True) and \
            not getattr(self, "_is_conv_to_out", False)
        if concat and out_channels % heads != 0:
            raise ValueError(f"Ensure that the number of output channels of "
                             f"'GATConv' (got '{out_channels}') is divisible "
                             f"by the number of heads (got '{heads}')")
        return layer(in_channels, out_channels // heads if concat else
                     out_channels, heads=heads, concat=concat,
                     dropout=self.dropout.p, **kwargs)


class PNA(PyGPNA):
    r""":class:`torch_geometric.nn.models.PNA` (same arguments) built from
    gnnagg's :class:`~gnnagg.nn.PNAConv`."""

    def init_conv(self, in_channels: int, out_channels: int,
                  **kwargs) -> PNAConv:
        return PNAConv(in_channels, out_channels, **kwargs)


class GATPaperNet(torch.nn.Module):
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
        x = dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)

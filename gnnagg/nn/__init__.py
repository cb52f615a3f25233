"""Layers (:mod:`gnnagg.nn.conv`) and aggregators (:mod:`gnnagg.nn.aggr`)."""
from . import aggr
from .conv import GATConv, GATv2Conv, PNAConv, PNASimpleConv, TANGNNConv

__all__ = ["aggr", "GATConv", "GATv2Conv", "PNAConv", "PNASimpleConv",
           "TANGNNConv"]

"""Layers (:mod:`gnnagg.nn.conv`) and aggregators (:mod:`gnnagg.nn.aggr`)."""
from .conv import GATConv, GATv2Conv

__all__ = ["GATConv", "GATv2Conv"]

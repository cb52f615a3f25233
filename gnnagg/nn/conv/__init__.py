"""Message-passing layers on gnnagg's kernels."""
from .gat_conv import GATConv
from .gatv2_conv import GATv2Conv
from .pna_conv import PNAConv
from .pna_simple_conv import PNASimpleConv
from .tangnn_conv import TANGNNConv

__all__ = ["GATConv", "GATv2Conv", "PNAConv", "PNASimpleConv", "TANGNNConv"]

"""Model zoo built from gnnagg's layers."""
from .gat import GAT, PNA, GATPaperNet
from .gnn import GNN, make_conv
from .tangnn import TANGNN
from .zoo import MODELS, build_model, check_model

__all__ = ["GAT", "PNA", "GATPaperNet", "GNN", "TANGNN", "MODELS",
           "build_model", "check_model", "make_conv"]

"""Model zoo built from gnnagg's layers."""
from .gat import GAT, PNA, GATPaperNet
from .gnn import GNN, make_conv
from .tangnn import TANGNN
from .registry import LAYER_KINDS, MODELS, ModelEntry, check_model
from .zoo import build_model

__all__ = ["GAT", "PNA", "GATPaperNet", "GNN", "TANGNN", "MODELS",
           "LAYER_KINDS", "ModelEntry",
           "build_model", "check_model", "make_conv"]

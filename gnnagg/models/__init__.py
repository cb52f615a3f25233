"""Model zoo built from gnnagg's layers."""
from .gat import GAT
from .tangnn import TANGNN

__all__ = ["GAT", "TANGNN"]

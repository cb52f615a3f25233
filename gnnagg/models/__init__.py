"""Model zoo built from gnnagg's layers."""
from .gat import GAT

__all__ = ["GAT"]

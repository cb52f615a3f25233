"""gnnagg: attentive neighbourhood aggregators for graph neural networks."""
from . import nn, ops
from .debug import debug, is_debug_enabled, set_debug

__version__ = "0.1.0"
__all__ = ["nn", "ops", "debug", "is_debug_enabled", "set_debug"]

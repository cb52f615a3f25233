"""Opt-in input checks that cost a pass over the data (NaN/Inf scans)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

_state = {"enabled": False}


def is_debug_enabled() -> bool:
    return _state["enabled"]


def set_debug(enabled: bool) -> None:
    """Turn the NaN/Inf checks of gnnagg's layers on or off."""
    _state["enabled"] = bool(enabled)


@contextmanager
def debug(enabled: bool = True):
    """Context manager: ``with gnnagg.debug(): model(x, edge_index)``."""
    previous = _state["enabled"]
    _state["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _state["enabled"] = previous


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise ``ValueError`` if debug checks are on and ``tensor`` holds a NaN
    or an infinity."""
    if _state["enabled"] and tensor.is_floating_point() and \
            not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or Inf values")

"""Scratch buffers that the CPU kernels reuse for their large temporaries.

A fresh CPU tensor of a few megabytes costs its page faults on every call:
the allocator hands such blocks back to the system when they are freed, and
touching the pages of a new one costs more than the arithmetic done in it
(an ``E x F`` temporary of the molecule batch, ``E = 6,910``, ``F = 80``:
the two of a maximum's backward cost 3.7 ms a layer fresh, 1.7 ms reused).
:func:`scratch` keeps one buffer per name and thread, grown to the largest
request, and hands out views of it. Only a kernel's temporaries may live in
it: nothing that a kernel returns, saves for backward, or hands to another
kernel that asks for the same name. Buffers above :data:`SCRATCH_BYTES` are
not kept; :func:`clear_scratch` drops every kept buffer of the thread.
"""
from __future__ import annotations

import math
import threading
from typing import Dict, Sequence, Tuple

import torch
from torch import Tensor

#: the largest buffer kept per name (bytes); larger requests get fresh memory
SCRATCH_BYTES = 64 << 20

_local = threading.local()


def _buffers() -> Dict[Tuple[str, torch.dtype, bool], Tensor]:
    if not hasattr(_local, "buffers"):
        _local.buffers = {}
    return _local.buffers


def scratch(name: str, shape: Sequence[int], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape`` with ``like``'s dtype, in the
    buffer this thread keeps for ``name`` on the CPU; valid until the next
    request for ``name``. Elsewhere (other devices, whose allocators cache
    already; fake tensors) and above :data:`SCRATCH_BYTES`, a fresh one."""
    numel = math.prod(shape)
    if type(like) is not Tensor or like.device.type != "cpu" or \
            numel * like.element_size() > SCRATCH_BYTES:
        return like.new_empty(shape)
    # inference tensors cannot be written outside inference mode
    key = (name, like.dtype, torch.is_inference_mode_enabled())
    buffers = _buffers()
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[key] = torch.empty(numel, dtype=like.dtype)
    return buffer[:numel].view(shape)


def clear_scratch() -> None:
    """Drop this thread's scratch buffers (their memory goes back to the
    allocator)."""
    _buffers().clear()

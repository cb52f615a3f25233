r"""Per-operation choice between native torch kernels and torch-scatter.

Segment reductions over a CSR view (sorted destination groups) run either
on native torch (on the CPU, float sums, means, maxima and minima as a
sparse product with reduction; otherwise :func:`torch.segment_reduce`) or,
when the optional ``torch-scatter`` package is installed, on
``torch_scatter.segment_csr``. The default
``"auto"`` backend picks, per operation and device type, the kernel measured
faster by ``benchmarks/backends.py`` (:data:`TORCH_SCATTER_FASTER` records
those measurements); ``set_backend("torch")`` or
``set_backend("torch_scatter")`` forces one.
"""
from __future__ import annotations

import importlib.util
from typing import FrozenSet, Optional, Tuple

import torch
from torch import Tensor

from .csr import reduce_rows, selection_matrix

BACKENDS = ("auto", "torch", "torch_scatter")
REDUCTIONS = ("sum", "mean", "max", "min", "prod")

#: each reduction's name in ``torch.sparse.mm(..., reduce)`` (a mean is a
#: sum divided afterwards)
SPARSE_REDUCE = {"sum": "sum", "mean": "sum", "max": "amax", "min": "amin"}

#: ``(reduction, device type)`` pairs where ``segment_csr`` of torch-scatter
#: beats the native kernel in ``benchmarks/backends.py``. Against
#: ``torch.segment_reduce`` (torch 2.13, torch-scatter 2.1.2, ogbn-arxiv
#: scale) it won only the CPU's ``mean``, at 0.70-0.77x the time; the
#: CPU's native kernel is now a sparse product at 0.2x ``segment_reduce``'s
#: time, so none is left.
TORCH_SCATTER_FASTER: FrozenSet[Tuple[str, str]] = frozenset()

_state = {"backend": "auto"}


def has_torch_scatter() -> bool:
    return importlib.util.find_spec("torch_scatter") is not None


def set_backend(name: str) -> None:
    """Select the segment-reduction backend: ``"auto"`` (default),
    ``"torch"`` or ``"torch_scatter"``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    if name == "torch_scatter" and not has_torch_scatter():
        raise ValueError("backend 'torch_scatter' needs the torch-scatter "
                         "package: pip install 'gnnagg[scatter]'")
    _state["backend"] = name


def get_backend() -> str:
    return _state["backend"]


def uses_torch_scatter(reduce: str, device: torch.device) -> bool:
    """Whether ``reduce`` on ``device`` runs on torch-scatter."""
    backend = _state["backend"]
    if backend == "auto":
        return ((reduce, device.type) in TORCH_SCATTER_FASTER
                and has_torch_scatter())
    return backend == "torch_scatter"


def native_segment_reduce(src: Tensor, rowptr: Tensor, reduce: str,
                          order: Optional[Tensor] = None) -> Tensor:
    r"""Reduce consecutive segments of ``src`` along dim 0, or with
    ``order``, of ``src[order]`` (``order[k]`` is the row in slot ``k``: a
    CSR grouping of unsorted messages).

    .. math::
        \mathrm{out}_i = \bigoplus_{k=\mathrm{rowptr}_i}^{\mathrm{rowptr}_{i+1}-1}
        \mathrm{src}_{\mathrm{order}_k}, \qquad \oplus \in \{\sum,
        \mathrm{mean}, \max, \min, \prod\}

    Empty segments give 0 (1 for the product). Differentiable, but the
    gradients of max and min at ties are the native kernel's:
    :func:`gnnagg.ops.segment_reduce` is the one to differentiate.

    On the CPU, sums, means, maxima and minima of float32 and float64 rows
    are a sparse product with reduction, ``torch.sparse.mm(S, src,
    reduce)``, ``S`` the segments' ``N x E`` matrix of ones: it took 0.1-0.2
    of ``torch.segment_reduce``'s time on 64 features (9,780 x 64: 71
    against 556 us summed, 62 against 635 us maximised; 2.3M x 64: 50
    against 212 ms, 45 against 236 ms), 0.3-0.9 on 4. Sums are MKL's
    product into a fresh output (:func:`~gnnagg.ops.csr.sparse_product`),
    which took 0.15-0.9 of the time of ``torch.sparse.mm``'s, the less the
    narrower the rows. Maxima and minima of single values are
    ``torch.segment_reduce``'s, which took half the product's time. The
    product reads the rows of an ``order`` where they lie: on ogbn-arxiv's
    2.3M messages of 64 values in random order it summed them in 82 ms,
    where ``scatter_add_`` took 162 ms (and a stable sort of their
    destinations 41 ms).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduce!r}; choose one of "
                         f"{REDUCTIONS}")
    torch_scatter_used = reduce != "prod" and uses_torch_scatter(
        reduce, src.device)
    if not torch_scatter_used and reduce != "prod" and \
            src.device.type == "cpu" and \
            src.dtype in (torch.float32, torch.float64) and src.numel() > 0 \
            and not (reduce in ("max", "min") and src[0].numel() == 1):
        return _sparse_segment_reduce(src, rowptr, reduce, order)
    if order is not None:
        src = src.index_select(0, order)
    if torch_scatter_used:
        import torch_scatter
        return torch_scatter.segment_csr(src, rowptr, reduce=reduce)
    out = torch.segment_reduce(src, reduce, offsets=rowptr, axis=0,
                               unsafe=True)
    if reduce in ("sum", "prod"):
        return out
    nonempty = (rowptr.diff() > 0).view((-1,) + (1,) * (src.dim() - 1))
    return torch.where(nonempty, out, out.new_zeros(()))


def _sparse_segment_reduce(src: Tensor, rowptr: Tensor, reduce: str,
                           order: Optional[Tensor] = None) -> Tensor:
    """Sum, mean, maximum or minimum of the segments (of rows ``order``)
    as a CSR product with reduction; empty segments give 0."""
    segments = selection_matrix(rowptr, order, src.size(0), src)
    out = reduce_rows(segments, src, SPARSE_REDUCE[reduce])
    if reduce == "mean":
        counts = rowptr.diff().clamp(min=1).to(src.dtype)
        out = out / counts.view((-1,) + (1,) * (src.dim() - 1))
    return out

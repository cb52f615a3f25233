r"""Several statistics of every neighbourhood from shared, fused reductions.

For the :math:`d_i` values :math:`\mathcal{X}_i` of node :math:`i`:

.. math::
    \mathrm{mean}_i = \tfrac{1}{d_i}\sum_{x \in \mathcal{X}_i} x, \quad
    \mathrm{var}_i = \max\big(0, \tfrac{1}{d_i}\sum x^2 -
    \mathrm{mean}_i^2\big), \quad
    \mathrm{std}_i = \sqrt{\mathrm{var}_i}\ \text{(0 where var} \le
    \epsilon\text{)}

The first and second moments come from the sums of :math:`x` and
:math:`x^2`, shared by every statistic that needs them: ``mean, min, max,
std`` cost four reductions (PyG's separate aggregations: six). Both
moments come from one operator, whose backward reads the messages once
(:func:`~gnnagg.ops.message_moments`) or sends both gradients to the
neighbours with two node-sized transposed products
(:func:`~gnnagg.ops.gather_moments`). Maxima and minima of neighbour
values come from one operator when both are asked for. Empty
neighbourhoods give 0 for every statistic.

* :func:`message_stats` reduces messages by destination (sorted or not).
* :func:`segment_stats` reduces per-edge values already in CSR order.
* :func:`neighbor_stats` reduces node values over each node's in-neighbours
  with sparse-matrix reductions on the CPU (``torch.sparse.mm(A, x,
  reduce)``), never forming the ``E x F`` gathered tensor in the forward
  pass.
* :func:`shift_stats` turns statistics of :math:`\{z\}` into those of
  :math:`\{s_i + z\}` for a per-node shift :math:`s_i`.

All run on the operators of :mod:`gnnagg.ops.segment`; maxima and minima
split their gradient between ties, as PyG's scatter does.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Tuple

from torch import Tensor

from .csr import CSRGraph, segment_ids
from .library import records_grad
from .segment import (floored_std, gather_extremes, gather_moments,
                      gather_reduce, message_counts, message_moments,
                      reduce_messages)

STATISTICS = ("sum", "mean", "min", "max", "var", "std")


def _check(stats: Iterable[str]) -> List[str]:
    stats = list(dict.fromkeys(stats))
    unknown = [s for s in stats if s not in STATISTICS]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; choose from "
                         f"{STATISTICS}")
    return stats


def _stats(reduce: Callable[[Tensor, str], Tensor], x: Tensor,
           degree: Callable[[], Tensor], stats: List[str],
           moments: Callable[[Tensor, bool], Tuple[Tensor, Tensor]],
           extremes: Optional[Callable[[Tensor], Tuple[Tensor, Tensor]]]
           = None) -> Dict[str, Tensor]:
    """Combine ``reduce(values, "sum" | "mean" | "max" | "min")`` into
    ``stats``, each reduction done once however many statistics use it:
    ``moments(x, std)`` (the mean and the unfloored variance, or PyG's
    standard deviation with ``std``) where either is asked for,
    ``degree()`` (messages per destination) where a mean comes from a
    sum also asked for, and
    ``extremes(x)`` (maximum and minimum together) where given and both
    are asked for."""
    out: Dict[str, Tensor] = {}
    if "var" in stats:
        out["mean"], variance = moments(x, False)
        out["var"] = variance.relu()  # cheaper backward than clamp's
        if "std" in stats:  # both: the std from the variance by autograd
            out["std"] = floored_std(variance, inplace=False)
    elif "std" in stats:  # its gradient folded into the operator's
        out["mean"], out["std"] = moments(x, True)
    if "sum" in stats:
        out["sum"] = reduce(x, "sum")
    if "mean" in stats and "mean" not in out:
        if "sum" in out:  # the sum's reduction serves both
            out["mean"] = out["sum"] / degree().clamp(min=1).to(
                x.dtype).view((-1,) + (1,) * (x.dim() - 1))
        else:  # one operator, one backward node
            out["mean"] = reduce(x, "mean")
    if extremes is not None and "max" in stats and "min" in stats:
        out["max"], out["min"] = extremes(x)
    for extreme in ("max", "min"):
        if extreme in stats and extreme not in out:
            out[extreme] = reduce(x, extreme)
    return {s: out[s] for s in stats}


def message_stats(x: Tensor, index: Tensor, num_segments: int,
                  stats: Iterable[str],
                  rowptr: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """The requested ``stats`` (from :data:`STATISTICS`) of the messages
    ``x`` by destination ``index`` (sorted by it when ``rowptr`` is
    given), each ``(num_segments, *x.shape[1:])``."""
    return _stats(lambda t, how: reduce_messages(t, index, num_segments, how,
                                                 rowptr), x,
                  lambda: message_counts(index, num_segments, rowptr),
                  _check(stats), lambda t, std: message_moments(
                      t, index, num_segments, rowptr, std))


def segment_stats(x: Tensor, rowptr: Tensor,
                  stats: Iterable[str]) -> Dict[str, Tensor]:
    """The requested ``stats`` (from :data:`STATISTICS`) of the segments
    ``x[rowptr[i]:rowptr[i+1]]``, each ``(len(rowptr) - 1, *x.shape[1:])``."""
    return message_stats(x, segment_ids(rowptr, x.size(0)),
                         rowptr.numel() - 1, stats, rowptr)


def neighbor_stats(x: Tensor, csr: CSRGraph,
                    stats: Iterable[str]) -> Dict[str, Tensor]:
    """The requested ``stats`` of ``{x[j] : j -> i}`` for every destination
    ``i`` of ``csr``, from node values ``x`` (``(num_src, *F)``), each
    ``(num_dst, *F)``."""
    if x.size(0) != csr.num_src:
        raise ValueError(f"expected {csr.num_src} rows of node values, got "
                         f"{x.size(0)}")
    transpose = None
    if records_grad(x) and x.device.type == "cpu":
        transpose = csr.transpose
    def reduce(values: Tensor, how: str) -> Tensor:
        return gather_reduce(values, csr.col, csr.row, csr.num_dst, how,
                             csr.rowptr, transpose)

    def moments(values: Tensor, std: bool) -> Tuple[Tensor, Tensor]:
        return gather_moments(values, csr.col, csr.row, csr.num_dst,
                              csr.rowptr, transpose, std)

    return _stats(reduce, x, lambda: csr.degree, _check(stats), moments,
                  lambda t: gather_extremes(t, csr.col, csr.row,
                                            csr.num_dst, csr.rowptr,
                                            transpose))


def shift_stats(stats: Dict[str, Tensor], shift: Tensor,
                degree: Tensor) -> Dict[str, Tensor]:
    r"""Statistics of :math:`\{s_i + z\}` from those of :math:`\{z\}`:
    mean, min and max move by :math:`s_i`, the sum by :math:`d_i s_i`,
    variance and std stay; empty neighbourhoods stay 0."""
    deg = degree.to(shift.dtype).view((-1,) + (1,) * (shift.dim() - 1))
    moved = shift * (deg > 0)
    out = {}
    for name, value in stats.items():
        if name in ("mean", "min", "max"):
            value = value + moved
        elif name == "sum":
            value = value + deg * shift
        out[name] = value
    return out

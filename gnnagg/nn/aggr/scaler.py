r"""PNA's degree scalers (Corso et al., 2020)."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn import aggr as pyg_aggr
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.conv import PNAConv as PyGPNAConv

from ...ops import (MAX_DEGREE_GROUPS, CSRGraph, degree_scaled_linear,
                   groups_by_degree, message_counts)
from .base import SegmentAggregation, infer_dim_size, require_index
from .basic import StatAggregation
from .multi import MultiAggregation, resolve_aggregation

SCALERS = ("identity", "amplification", "attenuation", "linear",
           "inverse_linear")


def average_degrees(deg, scalers: List[str]) -> Tuple[float, float]:
    r"""The scalers' normalisers from the degree histogram ``deg``:
    :math:`\delta_{lin} = \mathbb{E}[d]` and :math:`\delta_{log} =
    \mathbb{E}[\log(d + 1)]`. Raises ``TypeError``/``ValueError`` naming
    ``deg`` where the histogram is not one, or where a scaler in ``scalers``
    would divide by a normaliser of 0 (every node of degree 0)."""
    if not isinstance(deg, (Tensor, list, tuple)):
        raise TypeError("deg must be a degree histogram (a 1-D tensor or "
                        "list, deg[d] = number of nodes of in-degree d), got "
                        f"{type(deg).__name__}; compute it with "
                        "degree_histogram()")
    deg = torch.as_tensor(deg)
    if deg.is_complex() or deg.dtype == torch.bool:
        raise TypeError(f"deg must hold node counts, got dtype {deg.dtype}")
    deg = deg.to(torch.float)
    if deg.dim() != 1 or not bool(torch.isfinite(deg).all()) or \
            deg.sum() <= 0 or bool((deg < 0).any()):
        raise ValueError("deg must be a non-empty histogram of node "
                         "in-degrees (deg[d] = number of nodes of degree "
                         "d); compute it with degree_histogram()")
    num_nodes = float(deg.sum())
    bins = torch.arange(deg.numel(), dtype=torch.float)
    avg_lin = float((bins * deg).sum()) / num_nodes
    avg_log = float(((bins + 1).log() * deg).sum()) / num_nodes
    zero_divisors = [s for s in scalers if avg_lin == 0 and s in (
        "amplification", "attenuation", "linear", "inverse_linear")]
    if zero_divisors:
        raise ValueError(f"deg counts only nodes of in-degree 0, so the "
                         f"scalers {zero_divisors} would divide by an "
                         f"average degree of 0; build deg from graphs with "
                         f"edges (degree_histogram of the training set)")
    return avg_lin, avg_log


def degree_histogram(graphs: Iterable) -> Tensor:
    r"""``hist[d]`` = number of nodes with in-degree ``d`` over ``graphs``
    (a PyG dataset, a list of ``Data`` or a ``DataLoader`` of batches), as
    :class:`DegreeScalerAggregation` and :class:`gnnagg.nn.PNAConv` take:
    PyG's ``PNAConv.get_degree_histogram``."""
    return PyGPNAConv.get_degree_histogram(graphs)


class DegreeScalerAggregation(SegmentAggregation,
                               pyg_aggr.DegreeScalerAggregation):
    r"""Aggregations multiplied by degree scalers, concatenated, from
    `"Principal Neighbourhood Aggregation for Graph Nets"
    <https://arxiv.org/abs/2004.05718>`_ (Corso et al., 2020):

    .. math::
        \mathbf{out}_i = \big\Vert_{s \in S} s(d_i) \cdot
        \mathrm{aggr}(\mathcal{X}_i)

    with :math:`s(d) = 1` (identity), :math:`\log(d+1)/\delta`
    (amplification), :math:`\delta/\log(d+1)` (attenuation),
    :math:`d/\bar d` (linear) and :math:`\bar d/d` (inverse_linear), where
    :math:`\delta` and :math:`\bar d` are the mean of :math:`\log(d+1)` and of
    :math:`d` over the training degree histogram ``deg``. Degrees below 1
    are clamped to 1 where they divide. Parameter and buffer names, ``repr``
    and the need for ``index`` (``ptr`` alone raises
    ``NotImplementedError``) are PyG's; unlike PyG's, unknown scalers and
    empty or negative histograms are refused at construction.

    Args:
        aggr (str or list or Aggregation): one aggregation (name or module)
            or a list of them.
        scaler (str or list): one scaler name or a list.
        deg (Tensor): degree histogram (:func:`degree_histogram`).
        train_norm (bool, optional): learn :math:`\delta` and :math:`\bar
            d`. (default: ``False``)
        aggr_kwargs (list of dict, optional): constructor arguments of the
            aggregations. (default: ``None``)

    Shapes:
        - **input:** messages :math:`(E, F)`, destination index :math:`(E)`
        - **output:** :math:`(N, |\mathrm{scaler}| F')` with :math:`F'` the
          aggregation's output size

    Example::

        >>> aggr = DegreeScalerAggregation(["mean", "max"], ["identity",
        ...     "amplification"], deg=torch.tensor([1, 3, 1]))
        >>> out = aggr(torch.randn(4, 8), torch.tensor([0, 1, 1, 2]), dim_size=3)
        >>> out.shape  # 2 scalers x 2 aggregations x 8 features
        torch.Size([3, 32])
    """

    #: Python-side helpers of gnnagg's layers, not scripted
    __jit_unused_properties__ = ["statistics"]

    def __init__(self, aggr: Union[str, List[str], Aggregation],
                 scaler: Union[str, List[str]], deg: Tensor,
                 train_norm: bool = False,
                 aggr_kwargs: Optional[List[Dict[str, Any]]] = None):
        Aggregation.__init__(self)
        if isinstance(aggr, (list, tuple)):
            self.aggr = MultiAggregation(list(aggr), aggr_kwargs)
        else:
            self.aggr = resolve_aggregation(aggr, **(aggr_kwargs or [{}])[0])
        self.scaler = [scaler] if isinstance(scaler, str) else list(scaler)
        unknown = [s for s in self.scaler if s not in SCALERS]
        if unknown:
            raise ValueError(f"unknown scaler(s) {unknown}; choose from "
                             f"{SCALERS}")
        self.init_avg_deg_lin, self.init_avg_deg_log = average_degrees(
            deg, self.scaler)
        if train_norm:
            self.avg_deg_lin = torch.nn.Parameter(torch.empty(1))
            self.avg_deg_log = torch.nn.Parameter(torch.empty(1))
        else:
            self.register_buffer("avg_deg_lin", torch.empty(1))
            self.register_buffer("avg_deg_log", torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self):
        self.avg_deg_lin.data.fill_(self.init_avg_deg_lin)
        self.avg_deg_log.data.fill_(self.init_avg_deg_log)
        self.aggr.reset_parameters()

    def factors(self, degree: Tensor, dtype: torch.dtype) -> Tensor:
        """``(N, len(scaler))``: every scaler's factor for nodes of in-degree
        ``degree`` (1 for identity)."""
        deg = degree.to(dtype)
        log_deg = torch.log(deg.clamp(min=1) + 1)
        formulas = {
            "identity": lambda: torch.ones_like(deg),
            "amplification": lambda: torch.log(deg + 1) / self.avg_deg_log,
            "attenuation": lambda: self.avg_deg_log / log_deg,
            "linear": lambda: deg / self.avg_deg_lin,
            "inverse_linear": lambda: self.avg_deg_lin / deg.clamp(min=1),
        }
        return torch.stack([formulas[s]() for s in self.scaler], dim=-1)

    def scale(self, out: Tensor, degree: Tensor) -> Tensor:
        """Apply every scaler to aggregated ``out`` (dim 0 = nodes of
        in-degree ``degree``) and concatenate along the last dim."""
        if self.scaler == ["identity"]:
            return out
        factors = self.factors(degree, out.dtype)
        factors = factors.view(factors.shape[:1] + (1,) * (out.dim() - 2) +
                               factors.shape[1:])
        return torch.cat([out * factors[..., k:k + 1]
                          for k in range(len(self.scaler))], dim=-1)

    @property
    def statistics(self) -> Optional[List[str]]:
        """The statistics (``mean``, ``std``, ...) this aggregation
        concatenates, in order, when every inner aggregation is one: then it
        can run from node values (:func:`gnnagg.ops.neighbor_stats`).
        Otherwise None."""
        inner = self.aggr
        if isinstance(inner, StatAggregation):
            return [inner.statistic]
        if isinstance(inner, MultiAggregation) and inner.mode == "cat" and \
                all(isinstance(a, StatAggregation) for a in inner.aggrs):
            return [a.statistic for a in inner.aggrs]
        return None

    def per_scaler(self, weight: Tensor) -> Tensor:
        """A weight ``(O, |scaler| K)`` laid out as a linear map of this
        module's output, as one ``(O, K)`` matrix per scaler: ``(|scaler|, O,
        K)``."""
        return weight.view(weight.size(0), len(self.scaler), -1) \
            .transpose(0, 1)

    def groups_by_degree(self, weight: Tensor, csr: CSRGraph,
                         max_groups: int = MAX_DEGREE_GROUPS) -> bool:
        """Whether :meth:`scaled_linear` with ``weight`` on ``csr`` computes
        one product per in-degree (:func:`gnnagg.ops.groups_by_degree`), and
        so takes its rows grouped by degree."""
        return groups_by_degree(csr, self.per_scaler(weight).shape,
                                max_groups)

    def scaled_linear(self, aggregated: Tensor, weight: Tensor,
                      csr: CSRGraph, max_groups: int = MAX_DEGREE_GROUPS,
                      rows_by_degree: bool = False) -> Tensor:
        r""":math:`W\,\mathbf{out}_i` for every destination of ``csr``,
        from the unscaled inner aggregation ``aggregated`` (``(N, K)``, its
        rows those of ``csr.by_degree`` with ``rows_by_degree``) and a
        weight ``(O, |scaler| K)`` laid out as a linear map of this module's
        output, without building the ``N x |scaler| K`` scaled copies
        (:func:`gnnagg.ops.degree_scaled_linear`)."""
        return degree_scaled_linear(
            aggregated, self.per_scaler(weight),
            lambda degrees: self.factors(degrees, aggregated.dtype), csr,
            max_groups, rows_by_degree)

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2) -> Tensor:
        require_index(index)
        if isinstance(self.aggr, SegmentAggregation):
            return super().forward(x, index, None, dim_size, dim)
        # a PyG aggregation inside: its result, scaled
        out = self.aggr(x, index, None, dim_size, dim).movedim(dim, 0)
        degree = torch.bincount(index, minlength=infer_dim_size(
            index, None, dim_size))
        return self.scale(out, degree).movedim(0, dim)

    @property
    def reduces_by_index(self) -> bool:  # type: ignore[override]
        return getattr(self.aggr, "reduces_by_index", False)

    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        return self.scale(self.aggr.reduce_messages(x, index, num_segments,
                                                    rowptr),
                          message_counts(index, num_segments, rowptr))

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        return self.scale(self.aggr.reduce_segments(x, csr), csr.degree)

r"""PyG's rule for the edge features of added self-loops (``fill_value``
of :class:`~torch_geometric.nn.conv.GATConv` and
:class:`~torch_geometric.nn.conv.GATv2Conv`, as
:func:`torch_geometric.utils.add_self_loops`), on gnnagg's self-loop CSR
view (:class:`~gnnagg.ops.CSRGraph` built with ``self_loops=True``:
existing loops dropped, one loop ``(i, i)`` per ``i < min(num_src,
num_dst)`` added)."""
from __future__ import annotations

import torch
from torch import Tensor

from ...ops import CSRGraph


def self_loop_edge_features(csr: CSRGraph, edge_attr: Tensor,
                            fill_value) -> Tensor:
    r"""Edge features in the caller's order of a self-loop view: those of
    the kept edges, then one row per loop given by ``fill_value`` (a
    number, a tensor, or a reduction ``'add' | 'mean' | 'min' | 'max' |
    'mul'`` of the features of the edges entering that node)."""
    if csr.kept_edges is None:
        return edge_attr
    kept = edge_attr.index_select(0, csr.kept_edges)
    loop_shape = (csr.num_loops,) + tuple(edge_attr.shape[1:])
    if isinstance(fill_value, str):
        reduce = {"add": "sum", "sum": "sum", "mean": "mean",
                  "min": "amin", "max": "amax", "mul": "prod"}.get(
                      fill_value)
        if reduce is None:
            raise ValueError(f"unknown fill_value {fill_value!r}; use a "
                             "number, a tensor or one of 'add', 'mean', "
                             "'min', 'max', 'mul'")
        is_loop_slot = csr.perm >= kept.size(0)
        dst = csr.row[~is_loop_slot]
        index = dst.view((-1,) + (1,) * (kept.dim() - 1)).expand_as(kept)
        src = kept.index_select(0, csr.perm[~is_loop_slot])
        empty = 1.0 if reduce == "prod" else 0.0  # as PyG's scatter
        loops = kept.new_full((csr.num_dst,) + loop_shape[1:], empty)
        loops = loops.scatter_reduce(0, index, src, reduce,
                                     include_self=False)
        loops = loops[:csr.num_loops]
    elif isinstance(fill_value, Tensor):
        value = fill_value.to(edge_attr.device, edge_attr.dtype)
        loops = value.expand(loop_shape).contiguous()
    else:
        loops = edge_attr.new_full(loop_shape, float(fill_value))
    return torch.cat([kept, loops], dim=0)

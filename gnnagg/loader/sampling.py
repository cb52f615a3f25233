r"""Uniform neighbour sampling without replacement, hop by hop, on a CSC
graph (``colptr`` over destinations, ``row`` = source of each slot).

Hop :math:`k` takes, for every node first reached at hop :math:`k - 1`
(the seeds at hop 1), :math:`\min(f_k, d)` of its :math:`d` in-neighbours
uniformly without replacement (all of them when :math:`f_k < 0`), by
Floyd's algorithm vectorised over nodes: :math:`O(f_k^2)` work per node
whatever its degree. Sources not seen before get the next local ids in
order of first appearance, so seeds are ``0..B-1`` and edges come out
grouped by destination in increasing local id.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor


class SampledSubgraph(NamedTuple):
    """``node``: global id of each local node (seeds first); ``row`` /
    ``col``: local source / destination of each sampled edge; ``edge``: its
    slot in the CSC arrays; per-hop counts of new nodes and edges."""
    node: Tensor
    row: Tensor
    col: Tensor
    edge: Tensor
    num_sampled_nodes: List[int]
    num_sampled_edges: List[int]


def _floyd_sample(degree: Tensor, fanout: int,
                  generator: Optional[torch.Generator]) -> Tensor:
    """``(n, fanout)`` distinct offsets in ``[0, degree)`` per row, uniform
    over subsets (Floyd's algorithm, vectorised over rows: for
    ``j = d - f .. d - 1`` draw ``t`` in ``[0, j]``, keep ``j`` if ``t`` was
    drawn already)."""
    picks = degree.new_empty(degree.numel(), fanout)
    for i in range(fanout):
        j = degree - fanout + i
        draw = (torch.rand(degree.numel(), generator=generator,
                           device=degree.device, dtype=torch.float64)
                * (j + 1)).long().minimum(j)
        taken = (picks[:, :i] == draw.unsqueeze(1)).any(1)
        picks[:, i] = torch.where(taken, j, draw)
    return picks


def _segment_slots(colptr: Tensor, nodes: Tensor, fanout: int,
                   generator: Optional[torch.Generator]):
    """CSC slots sampled for ``nodes`` (grouped by node, in order) and the
    position in ``nodes`` of the destination of each slot."""
    start = colptr[nodes]
    degree = colptr[nodes + 1] - start
    whole = degree <= fanout if fanout >= 0 else torch.ones_like(
        degree, dtype=torch.bool)
    counts = torch.where(whole, degree, fanout)
    position = torch.repeat_interleave(
        torch.arange(nodes.numel(), device=nodes.device), counts)
    offset = torch.arange(position.numel(), device=nodes.device) - \
        (torch.cumsum(counts, 0) - counts)[position]
    partial = (~whole).nonzero().view(-1)
    if partial.numel():
        picks = _floyd_sample(degree[partial], fanout, generator)
        is_partial = ~whole[position]
        offset[is_partial] = picks.view(-1)
    return start[position] + offset, position


def _check_csc(colptr: Tensor, row: Tensor) -> None:
    for name, value in (("colptr", colptr), ("row", row)):
        if not isinstance(value, Tensor) or value.dim() != 1 or \
                value.dtype not in (torch.long, torch.int32):
            raise TypeError(f"{name} must be a 1-D integer tensor, got "
                            f"{getattr(value, 'dtype', type(value).__name__)}")
    if colptr.numel() == 0 or int(colptr[0]) != 0 or \
            int(colptr[-1]) != row.numel() or bool((colptr.diff() < 0).any()):
        raise ValueError("colptr must be non-decreasing offsets from 0 to "
                         f"len(row) ({row.numel()})")
    num_nodes = colptr.numel() - 1
    if row.numel() and (int(row.min()) < 0 or int(row.max()) >= num_nodes):
        raise ValueError(f"row holds node ids outside [0, {num_nodes}) "
                         f"(min {int(row.min())}, max {int(row.max())})")


def sample_neighbors(colptr: Tensor, row: Tensor, seeds: Tensor,
                     num_neighbors: Sequence[int],
                     generator: Optional[torch.Generator] = None
                     ) -> SampledSubgraph:
    """Sample ``len(num_neighbors)`` hops around ``seeds`` (distinct node
    ids); ``num_neighbors[k] < 0`` takes every in-neighbour at hop k.
    The graph is the CSC pair ``(colptr, row)``: the in-neighbours of node
    ``i`` are ``row[colptr[i]:colptr[i+1]]``. Every argument is checked
    (one pass over ``row``) and a bad one raises ``TypeError`` or
    ``ValueError`` naming it."""
    _check_csc(colptr, row)
    num_nodes = colptr.numel() - 1
    if not isinstance(seeds, Tensor) or seeds.dim() != 1 or \
            seeds.is_floating_point() or seeds.dtype == torch.bool:
        raise TypeError("seeds must be a 1-D integer tensor of node ids, got "
                        f"{getattr(seeds, 'dtype', type(seeds).__name__)}")
    if any(isinstance(n, bool) or not isinstance(n, int)
           for n in num_neighbors):
        raise TypeError("num_neighbors must be a list of ints, got "
                        f"{list(num_neighbors)!r}")
    seeds = seeds.long()
    if seeds.numel() and (int(seeds.min()) < 0 or
                          int(seeds.max()) >= num_nodes):
        raise ValueError(f"seed nodes must lie in [0, {num_nodes})")
    local = torch.full((num_nodes,), -1, dtype=torch.long,
                       device=colptr.device)
    local[seeds] = torch.arange(seeds.numel(), device=colptr.device)
    if not torch.equal(local[seeds], torch.arange(seeds.numel(),
                                                  device=colptr.device)):
        raise ValueError("seed nodes must be distinct")  # one id overwritten
    nodes, rows, cols, edges = [seeds], [], [], []
    num_sampled_nodes, num_sampled_edges = [seeds.numel()], []
    frontier, frontier_start, count = seeds, 0, seeds.numel()
    for fanout in num_neighbors:
        slot, position = _segment_slots(colptr, frontier, int(fanout),
                                        generator)
        source = row[slot]
        unseen = source[local[source] < 0]
        new, inverse = torch.unique(unseen, return_inverse=True)
        first = torch.full_like(new, unseen.numel()).scatter_reduce(
            0, inverse, torch.arange(unseen.numel(), device=new.device),
            "amin")
        new = new[torch.argsort(first)]  # order of first appearance
        local[new] = torch.arange(count, count + new.numel(),
                                  device=new.device)
        rows.append(local[source])
        cols.append(position + frontier_start)
        edges.append(slot)
        nodes.append(new)
        num_sampled_nodes.append(new.numel())
        num_sampled_edges.append(slot.numel())
        frontier, frontier_start = new, count
        count += new.numel()
    empty = seeds.new_empty(0)
    return SampledSubgraph(torch.cat(nodes), torch.cat(rows or [empty]),
                           torch.cat(cols or [empty]),
                           torch.cat(edges or [empty]), num_sampled_nodes,
                           num_sampled_edges)

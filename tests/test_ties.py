"""Maxima and minima at ties: every tied input gets an equal share of the
upstream gradient, whatever its sign, as PyG's scatter gives."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch_geometric.nn import aggr as pyg_aggr
from torch_geometric.utils import scatter

import gnnagg.ops.segment as segment_module
from gnnagg.nn import aggr
from gnnagg.ops import (csr_view, gather_extremes, neighbor_stats,
                        segment_max, segment_min, segment_reduce,
                        segment_stats)

from conftest import random_graph


def tied_messages(num_nodes, num_messages, width, levels, seed):
    """Integer-valued messages (few distinct values: many ties; none 0, see
    :func:`test_a_zero_maximum_shares_its_whole_gradient`), their
    destinations and an upstream gradient of either sign."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(1, levels + 1, (num_messages, width), generator=gen)
    index = torch.randint(0, num_nodes, (num_messages,), generator=gen)
    grad = torch.randn(num_nodes, width, generator=gen, dtype=torch.double)
    return x.double(), index, grad


def pyg_gradient(x, index, grad, reduce):
    x = x.clone().requires_grad_()
    out = scatter(x, index, 0, grad.size(0), reduce)
    return torch.autograd.grad(out, x, grad)[0]


@settings(max_examples=40, deadline=None)
@given(num_nodes=st.integers(1, 6), num_messages=st.integers(0, 30),
       levels=st.integers(1, 3), seed=st.integers(0, 10_000),
       reduce=st.sampled_from(["max", "min"]))
def test_segment_extremes_split_ties_like_pyg(num_nodes, num_messages, levels,
                                              seed, reduce):
    x, index, grad = tied_messages(num_nodes, num_messages, 3, levels, seed)
    order = torch.argsort(index, stable=True)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    rowptr[1:] = torch.bincount(index, minlength=num_nodes).cumsum(0)
    x_sorted = x[order].requires_grad_()
    out = segment_reduce(x_sorted, rowptr, reduce)
    got = torch.autograd.grad(out, x_sorted, grad)[0]
    expected = pyg_gradient(x, index, grad, reduce)[order]
    torch.testing.assert_close(got, expected)
    # a valid subgradient: each output's gradient is shared out in full
    nonempty = rowptr.diff() > 0
    torch.testing.assert_close(scatter(got, index[order], 0, num_nodes)[
        nonempty], grad[nonempty])


def pyg_neighbour_extreme(x, edge_index, num_nodes, grad, reduce):
    """PyG's max or min of x over in-neighbours, and the gradient of x."""
    gathered = x.index_select(0, edge_index[0]).requires_grad_()
    out = scatter(gathered, edge_index[1], 0, num_nodes, reduce)
    grad_edges = torch.autograd.grad(out, gathered, grad)[0]
    return out, scatter(grad_edges, edge_index[0], 0, num_nodes)


@settings(max_examples=30, deadline=None)
@given(num_nodes=st.integers(1, 8), num_edges=st.integers(0, 40),
       levels=st.integers(1, 3), seed=st.integers(0, 10_000),
       chunk=st.sampled_from([1, 3, 1 << 15]))
def test_neighbour_extremes_split_ties_with_duplicate_edges(
        num_nodes, num_edges, levels, seed, chunk):
    # small chunks: ties whose slots fall in different chunks of both the
    # first pass and the pass that corrects tied segments
    edge_index = random_graph(num_nodes, num_edges, seed=seed)
    edge_index = torch.cat([edge_index, edge_index[:, :num_edges // 2]], 1)
    x, _, grad = tied_messages(num_nodes, num_nodes, 3, levels, seed)
    csr = csr_view(edge_index, num_nodes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_module, "CHUNK_SLOTS", chunk)
        for reduce, function in (("max", segment_max), ("min", segment_min)):
            node_x = x.clone().requires_grad_()
            out = function(node_x, csr.rowptr, csr.row, csr.col)
            got = torch.autograd.grad(out, node_x, grad)[0]
            expected_out, expected = pyg_neighbour_extreme(
                x, edge_index, num_nodes, grad, reduce)
            torch.testing.assert_close(out, expected_out)
            torch.testing.assert_close(got, expected)
        # both extremes from one operator (PNA's min and max), directly and
        # through the statistics (which use it above one chunk of slots)
        for extremes in (
                lambda t: gather_extremes(t, csr.col, csr.row, num_nodes,
                                          csr.rowptr),
                lambda t: tuple(neighbor_stats(t, csr, ["max", "min"])
                                .values())):
            node_x = x.clone().requires_grad_()
            both = extremes(node_x)
            got = torch.autograd.grad(both, node_x, [grad, 2 * grad])[0]
            expected = 0
            for reduce, out, scale in zip(("max", "min"), both, (1, 2)):
                expected_out, expected_grad = pyg_neighbour_extreme(
                    x, edge_index, num_nodes, scale * grad, reduce)
                torch.testing.assert_close(out, expected_out)
                expected = expected + expected_grad
            torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("stats", [["max"], ["min"], ["min", "max"],
                                   ["mean", "min", "max", "std"]])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_statistics_at_zero_variance_match_pyg(stats, sign):
    # every message equal within its node: ties everywhere, variance zero
    index = torch.tensor([0, 0, 0, 1, 1, 3])
    x = torch.tensor([[2.0], [2.0], [2.0], [-1.0], [-1.0], [5.0]],
                     dtype=torch.double)
    grad = sign * torch.ones(4, len(stats), dtype=torch.double)
    ours = aggr.MultiAggregation(stats)
    reference = pyg_aggr.MultiAggregation(stats)
    results = []
    for module in (ours, reference):
        leaf = x.clone().requires_grad_()
        out = module(leaf, index, dim_size=4)
        results.append((out, torch.autograd.grad(out, leaf, grad)[0]))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_a_zero_maximum_shares_its_whole_gradient():
    # PyG's scatter counts its zero-initialised output as a tie where the
    # maximum is exactly 0 and hands out half the gradient; gnnagg's share
    # sums to the upstream gradient there too
    x = torch.tensor([[0.0], [-1.0]], requires_grad=True)
    aggr.MaxAggregation()(x, torch.tensor([0, 0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[1.0], [0.0]]))


def test_two_equal_messages_with_negative_gradient():
    # the example: PyG gives [-0.5, -0.5]
    for module in (aggr.MaxAggregation(), aggr.MinAggregation()):
        x = torch.ones(2, 1, requires_grad=True)
        module(x, torch.tensor([0, 0])).sum().neg().backward()
        torch.testing.assert_close(x.grad, torch.full((2, 1), -0.5))


def test_segment_and_neighbor_stats_agree_on_ties():
    edge_index = torch.tensor([[0, 0, 1, 2, 2], [3, 3, 3, 3, 0]])
    x = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.0, 2.0], [9.0, 9.0]],
                     dtype=torch.double)
    csr = csr_view(edge_index, 4)
    grad = -torch.ones(4, 4, dtype=torch.double)
    node_x = x.clone().requires_grad_()
    out = torch.cat(list(neighbor_stats(node_x, csr, ["min", "max"])
                         .values()), -1)
    from_nodes = torch.autograd.grad(out, node_x, grad)[0]
    gathered = x.index_select(0, csr.col).requires_grad_()
    out2 = torch.cat(list(segment_stats(gathered, csr.rowptr, ["min", "max"])
                          .values()), -1)
    torch.testing.assert_close(out, out2)
    per_edge = torch.autograd.grad(out2, gathered, grad)[0]
    torch.testing.assert_close(
        from_nodes, torch.zeros_like(x).index_add_(0, csr.col, per_edge))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_pna_edge_feature_path_with_duplicate_edges_matches_pyg(sign):
    # duplicated edges carrying equal edge features give equal messages:
    # PNA's min/max over them tie exactly
    import torch_geometric.nn as pyg_nn
    from gnnagg.nn import PNAConv
    edge_index = torch.tensor([[0, 0, 0, 1, 2, 2, 3], [1, 1, 1, 0, 3, 3, 2]])
    edge_attr = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] +
                             [[2.0, 2.0]] * 2 + [[0.5, 0.5]],
                             dtype=torch.double)
    deg = torch.tensor([0, 2, 1, 1])
    args = (4, 4, ["mean", "min", "max", "std"], ["identity", "linear"], deg)
    reference = pyg_nn.PNAConv(*args, edge_dim=2).double()
    ours = PNAConv(*args, edge_dim=2).double()
    ours.load_state_dict(reference.state_dict())
    x = torch.randint(0, 2, (4, 4)).double()
    results = []
    for module in (ours, reference):
        leaf, attr = x.clone().requires_grad_(), edge_attr.clone() \
            .requires_grad_()
        out = module(leaf, edge_index, attr)
        results.append([out] + list(torch.autograd.grad(
            sign * out.sum(), [leaf, attr] + list(module.parameters()))))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("chunk", [2, 1 << 15])
def test_extremes_of_one_dimensional_values_split_ties(chunk):
    # scalar node values (no feature axis), ties within and across chunks
    col, index = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 1, 2])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_module, "CHUNK_SLOTS", chunk)
        x = torch.tensor([1.0, 1.0, 0.0], requires_grad=True)
        out = segment_module.gather_reduce(x, col, index, 3, "max")
        out.backward(torch.tensor([5.0, 2.0, 3.0]))
    torch.testing.assert_close(out.detach(), torch.tensor([0.0, 1.0, 1.0]))
    # segment 1: x0 and x1 tie (1.0 each); segment 2: x0 alone
    torch.testing.assert_close(x.grad, torch.tensor([4.0, 1.0, 0.0]))


@pytest.mark.parametrize("chunk", [1, 1 << 15])
def test_a_nan_maximum_beside_a_tie_still_splits_the_tie(chunk):
    # node 0's in-neighbours 0 and 1: a NaN maximum (no winner) in feature 0
    # and a tie in feature 1, two winners, as many as without either
    nan = float("nan")
    x = torch.tensor([[nan, 1.0], [0.0, 1.0], [2.0, 0.0]],
                     dtype=torch.double, requires_grad=True)
    csr = csr_view(torch.tensor([[0, 1, 2], [0, 0, 1]]), 3)
    grad = torch.tensor([[1.0, 4.0], [2.0, 3.0], [5.0, 6.0]],
                        dtype=torch.double)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_module, "CHUNK_SLOTS", chunk)
        out = segment_max(x, csr.rowptr, csr.row, csr.col)
        got = torch.autograd.grad(out, x, grad)[0]
    torch.testing.assert_close(out.detach(), torch.tensor(
        [[nan, 1.0], [2.0, 0.0], [0.0, 0.0]], dtype=torch.double),
        equal_nan=True)
    # PyG's scatter gives the NaN's inputs NaN (0 / 0 shares); here none
    torch.testing.assert_close(got, torch.tensor(
        [[0.0, 2.0], [0.0, 2.0], [2.0, 3.0]], dtype=torch.double))


def test_chunked_extremes_in_bfloat16_split_ties_like_pyg():
    # 300 features of three levels, ties everywhere, in the chunked pass
    # and in one chunk, against PyG in float32: within bfloat16's rounding
    # of the shares (a miscounted tie would be off by half a gradient)
    gen = torch.Generator().manual_seed(3)
    edge_index = random_graph(6, 40, seed=3)
    csr = csr_view(edge_index, 6)
    # no 0 (see test_a_zero_maximum_shares_its_whole_gradient)
    x = torch.randint(1, 4, (6, 300), generator=gen).to(torch.bfloat16)
    grad = torch.randn(2, 6, 300, generator=gen).to(torch.bfloat16)
    expected = 0
    for reduce, grad_k in zip(("max", "min"), grad):
        expected = expected + pyg_neighbour_extreme(
            x.float(), edge_index, 6, grad_k.float(), reduce)[1]
    for chunk in (3, 1 << 15):  # the chunked pass, one chunk
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(segment_module, "CHUNK_SLOTS", chunk)
            leaf = x.clone().requires_grad_()
            both = gather_extremes(leaf, csr.col, csr.row, 6, csr.rowptr)
            got = torch.autograd.grad(both, leaf, list(grad))[0]
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), expected, atol=0.1,
                                   rtol=0.02)

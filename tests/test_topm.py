import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch_geometric.transforms import RandomLinkSplit
from torch_geometric.data import Data

from gnnagg.models import TANGNN
from gnnagg.nn import TANGNNConv
from gnnagg.nn.aggr import TopMAttentionAggregation
from gnnagg.ops import csr_from_index, segment_topm

from conftest import random_graph, skewed_graph


def skewed_index(seed=0):
    degrees = torch.tensor([1, 0, 5, 40, 2, 0, 9])
    index = torch.repeat_interleave(torch.arange(7), degrees)
    gen = torch.Generator().manual_seed(seed)
    return index[torch.randperm(index.numel(), generator=gen)], 7


@pytest.mark.parametrize("m", [1, 3, 8, 100])
def test_segment_topm_matches_per_node_topk(m):
    index, n = skewed_index()
    csr = csr_from_index(index, n)
    scores = torch.randn(index.numel(), 2)[csr.perm]
    mask = segment_topm(scores, csr.rowptr, m)
    for node in range(n):
        lo, hi = int(csr.rowptr[node]), int(csr.rowptr[node + 1])
        for head in range(2):
            k = min(m, hi - lo)
            expected = torch.zeros(hi - lo, dtype=torch.bool)
            expected[torch.topk(scores[lo:hi, head], k).indices] = True
            assert torch.equal(mask[lo:hi, head], expected)


def test_segment_topm_ties_are_deterministic():
    scores = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 2.0])
    mask = segment_topm(scores, torch.tensor([0, 4, 6]), 2)
    assert mask.tolist() == [True, True, False, False, True, True]
    with pytest.raises(ValueError, match="m must be"):
        segment_topm(scores, torch.tensor([0, 6]), 0)


def test_aggregator_equals_full_softmax_when_m_covers_degree():
    index, n = skewed_index()
    x = torch.randn(index.numel(), 6)
    ours = TopMAttentionAggregation(6, m=40)
    scores = ours.scores(x).detach()[:, 0] * ours.t.detach()
    from torch_geometric.utils import softmax
    alpha = softmax(scores, index, num_nodes=n)
    expected = torch.zeros(n, 6).index_add(0, index, alpha.unsqueeze(-1) * x)
    torch.testing.assert_close(ours(x, index, dim_size=n), expected)


def test_aggregator_with_m1_returns_best_message():
    index, n = skewed_index()
    x = torch.randn(index.numel(), 6)
    ours = TopMAttentionAggregation(6, m=1, t=100.0)
    out = ours(x, index, dim_size=n)
    scores = ours.scores(x).detach()[:, 0]
    for node in range(n):
        members = (index == node).nonzero().view(-1)
        if members.numel() == 0:
            assert torch.equal(out[node], torch.zeros(6))
        else:
            best = members[scores[members].argmax()]
            torch.testing.assert_close(out[node], x[best])


def test_gradients_reach_aux_temperature_and_kept_messages_only():
    index, n = skewed_index()
    x = torch.randn(index.numel(), 6, requires_grad=True)
    ours = TopMAttentionAggregation(6, m=2, heads=2)
    ours(x, index, dim_size=n).sum().backward()
    assert ours.aux.grad.abs().sum() > 0 and ours.t.grad.abs().sum() > 0
    touched = (x.grad.abs().sum(-1) > 0).sum()
    assert touched <= 2 * 2 * 5  # 5 non-empty nodes, 2 heads, m = 2


def test_gradcheck_top_m_attention():
    index, n = skewed_index()
    ours = TopMAttentionAggregation(3, m=3, heads=2, concat=True).double()
    x = torch.randn(index.numel(), 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ours(t, index, dim_size=n),
                                    (x,))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 6))
def test_aggregator_permutation_invariant(seed, m):
    index, n = skewed_index(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(index.numel(), 4, generator=gen)
    shuffle = torch.randperm(index.numel(), generator=gen)
    ours = TopMAttentionAggregation(4, m=m, heads=2)
    torch.testing.assert_close(ours(x, index, dim_size=n),
                               ours(x[shuffle], index[shuffle], dim_size=n))


def test_tangnn_conv_never_builds_n_by_n():
    # 300,000 nodes: an N x N float tensor would need 360 GB
    n = 300_000
    edge_index = random_graph(n, 600_000)
    conv = TANGNNConv(4, 4, m=8, num_neighbors=3).eval()
    out = conv(torch.randn(n, 4), edge_index)
    assert out.shape == (n, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("in_channels,out_channels", [(12, 4), (4, 6)])
def test_tangnn_conv_equals_its_formula_densely(in_channels, out_channels):
    torch.manual_seed(0)
    n, m, heads = 14, 5, 2
    conv = TANGNNConv(in_channels, out_channels, m=m, heads=heads).eval()
    x, edge_index = torch.randn(n, in_channels), skewed_graph(n)
    adjacency = torch.zeros(n, n).index_put_(
        (edge_index[1], edge_index[0]), torch.ones(edge_index.size(1)),
        accumulate=True)
    mean = adjacency @ x / adjacency.sum(1, keepdim=True).clamp(min=1)
    local = conv.lin_self(x) + conv.lin_neighbors(mean)
    scores = torch.nn.functional.cosine_similarity(x, conv.aux.view(1, -1))
    top = scores.topk(m).indices
    queries = conv.lin_query(x).view(n, heads, -1) / out_channels ** 0.5
    keys = conv.lin_key(x[top]).view(m, heads, -1)
    values = (conv.lin_value(x[top]) * scores[top, None]).view(m, heads, -1)
    attention = torch.einsum("nhc,khc->nhk", queries, keys).softmax(-1)
    attended = conv.lin_attention(torch.einsum(
        "nhk,khc->nhc", attention, values).reshape(n, -1))
    expected = conv.lin_out(torch.cat([local, attended], -1)) + conv.res(x)
    torch.testing.assert_close(conv(x, edge_index), expected, rtol=1e-5,
                               atol=1e-5)


def test_tangnn_conv_attends_within_each_graph_of_a_batch():
    conv = TANGNNConv(5, 4, m=3, heads=2).eval()
    x1, x2 = torch.randn(6, 5), torch.randn(9, 5)
    e1, e2 = random_graph(6, 12), random_graph(9, 20, seed=1)
    batched = conv(torch.cat([x1, x2]), torch.cat([e1, e2 + 6], 1),
                   torch.tensor([0] * 6 + [1] * 9))
    torch.testing.assert_close(batched[:6], conv(x1, e1))
    torch.testing.assert_close(batched[6:], conv(x2, e2))


def test_tangnn_conv_permutation_equivariant_and_learns_aux():
    conv = TANGNNConv(5, 4, m=3, heads=2).eval()
    edge_index = skewed_graph(20)
    x = torch.randn(20, 5)
    relabel = torch.randperm(20)
    x_perm = torch.empty_like(x)
    x_perm[relabel] = x
    torch.testing.assert_close(conv(x_perm, relabel[edge_index])[relabel],
                               conv(x, edge_index), rtol=1e-5, atol=1e-5)
    conv(x, edge_index).sum().backward()
    assert conv.aux.grad.abs().sum() > 0


def test_neighbour_sampling_only_in_training():
    conv = TANGNNConv(3, 3, m=2, num_neighbors=1)
    edge_index = skewed_graph(15)
    x = torch.randn(15, 3)
    conv.eval()
    assert torch.equal(conv(x, edge_index), conv(x, edge_index))
    conv.train()
    torch.manual_seed(0)
    first = conv(x, edge_index)
    torch.manual_seed(1)
    assert not torch.allclose(first, conv(x, edge_index))


@pytest.mark.parametrize("lc", [False, True])
def test_tangnn_model_node_graph_and_link_tasks(lc):
    edge_index = skewed_graph(30)
    x = torch.randn(30, 6)
    model = TANGNN(6, 8, 3, num_layers=2, m=4, lc=lc)
    assert model(x, edge_index).shape == (30, 3)
    graph_model = TANGNN(6, 8, 2, m=4, lc=lc, graph_level=True)
    batch = torch.tensor([0] * 12 + [1] * 18)
    assert graph_model(x, edge_index, batch=batch).shape == (2, 2)
    data = Data(x=x, edge_index=edge_index)
    train, _, _ = RandomLinkSplit(num_val=0.1, num_test=0.1)(data)
    z = model.encode(train.x, train.edge_index)
    assert model.decode(z, train.edge_label_index).shape == \
        train.edge_label.shape


def test_unsorted_messages_are_read_in_place_with_equal_results():
    gen = torch.Generator().manual_seed(4)
    index = torch.randint(0, 30, (400,), generator=gen)
    x = torch.randn(400, 6, dtype=torch.double, generator=gen,
                    requires_grad=True)
    aggr = TopMAttentionAggregation(6, m=3, heads=2).double()
    out = aggr(x, index, dim_size=30)  # unsorted: read in place
    csr = csr_from_index(index, 30, None, num_messages=400)
    sorted_out = aggr.reduce_segments(x.index_select(0, csr.perm), csr)
    torch.testing.assert_close(out, sorted_out)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, aggr.aux, aggr.t], grad)
    want = torch.autograd.grad(sorted_out, [x, aggr.aux, aggr.t], grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(
        lambda v: aggr(v, index, dim_size=30), (x,))

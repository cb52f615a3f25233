import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric import EdgeIndex

import gnnagg
from gnnagg.nn import GATConv, GATv2Conv

from conftest import random_graph, skewed_graph

LAYERS = [(GATConv, pyg_nn.GATConv), (GATv2Conv, pyg_nn.GATv2Conv)]


def paired(ours_cls, pyg_cls, *args, **kwargs):
    reference = pyg_cls(*args, **kwargs)
    ours = ours_cls(*args, **kwargs)
    ours.load_state_dict(reference.state_dict())  # strict: same names
    return ours, reference


def assert_same(ours, reference, inputs, kwargs=None):
    """Same outputs, attention weights and gradients (inputs included)."""
    kwargs = dict(kwargs or {}, return_attention_weights=True)
    out, (ei, alpha) = ours(*inputs, **kwargs)
    ref_out, (ref_ei, ref_alpha) = reference(*inputs, **kwargs)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert torch.equal(ei, ref_ei)
    torch.testing.assert_close(alpha, ref_alpha, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor)
              and t.requires_grad]
    got = torch.autograd.grad(out, list(ours.parameters()) + leaves, grad)
    want = torch.autograd.grad(ref_out, list(reference.parameters()) + leaves,
                               grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", LAYERS, ids=["GAT", "GATv2"])
@pytest.mark.parametrize("heads, concat, self_loops, residual", [
    (1, True, True, False), (4, True, True, True), (3, False, True, False),
    (2, True, False, True), (2, False, False, False)])
def test_parity_with_pyg(layer, heads, concat, self_loops, residual):
    ours, reference = paired(*layer, 16, 8, heads=heads, concat=concat,
                             add_self_loops=self_loops, residual=residual)
    x = torch.randn(40, 16, requires_grad=True)
    assert_same(ours, reference, (x, skewed_graph(40)))


@pytest.mark.parametrize("layer", LAYERS, ids=["GAT", "GATv2"])
@pytest.mark.parametrize("fill_value", ["mean", "max", "add", 0.5])
def test_parity_with_edge_features(layer, fill_value):
    ours, reference = paired(*layer, 16, 8, heads=3, edge_dim=5,
                             fill_value=fill_value)
    edge_index = skewed_graph(30)
    x = torch.randn(30, 16, requires_grad=True)
    edge_attr = torch.randn(edge_index.size(1), 5, requires_grad=True)
    assert_same(ours, reference, (x, edge_index, edge_attr))


class LowRankAdapter(torch.nn.Module):
    """A linear map plus a trainable low-rank delta (as LoRA wraps one):
    its ``weight`` alone does not give its output."""

    def __init__(self, linear, rank=2):
        super().__init__()
        self.base, self.weight = linear, linear.weight
        self.down = torch.nn.Linear(linear.in_channels, rank, bias=False)
        self.up = torch.nn.Linear(rank, linear.out_channels, bias=False)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x))


@pytest.mark.parametrize("bipartite", [False, True])
def test_gat_with_a_wrapped_linear_map_matches_pyg(bipartite):
    # the folded attention scores read lin.weight; a module whose output
    # is not lin.weight's map (an adapter) must get PyG's sum instead
    channels = (12, 6) if bipartite else 12
    ours, reference = paired(GATConv, pyg_nn.GATConv, channels, 8, heads=2)
    names = ["lin_src", "lin_dst"] if bipartite else ["lin"]
    for name in names:
        torch.manual_seed(len(name))
        adapter = LowRankAdapter(getattr(reference, name))
        setattr(reference, name, adapter)
        setattr(ours, name, LowRankAdapter(getattr(ours, name)))
        getattr(ours, name).load_state_dict(adapter.state_dict())
    x = torch.randn(25, 12, requires_grad=True)
    if bipartite:
        inputs = ((x, torch.randn(10, 6, requires_grad=True)),
                  random_graph(25, 90, 10))
    else:
        inputs = (x, random_graph(25, 90, 25))
    assert_same(ours, reference, inputs)


@pytest.mark.parametrize("bipartite", [False, True])
def test_gat_calls_a_hooked_linear_map_as_pyg(bipartite):
    # features and scores come from one product, not lin's call, unless
    # something observes that call: a hook on lin fires as with PyG's
    channels = (12, 6) if bipartite else 12
    ours, reference = paired(GATConv, pyg_nn.GATConv, channels, 8, heads=2,
                             bias=False)
    name = "lin_src" if bipartite else "lin"
    seen = {}

    def record(conv):
        def hook(module, args, out):
            seen[conv] = out.detach().clone()
        return hook

    for conv in (ours, reference):
        getattr(conv, name).register_forward_hook(record(conv))
    x = torch.randn(25, 12, requires_grad=True)
    if bipartite:
        inputs = ((x, torch.randn(10, 6)), random_graph(25, 90, 10))
    else:
        inputs = (x, random_graph(25, 90, 25))
    assert_same(ours, reference, inputs)
    torch.testing.assert_close(seen[ours], seen[reference])


@pytest.mark.parametrize("layer", LAYERS, ids=["GAT", "GATv2"])
@pytest.mark.parametrize("self_loops", [True, False])
def test_parity_bipartite(layer, self_loops):
    ours, reference = paired(*layer, (12, 6), 8, heads=2,
                             add_self_loops=self_loops, residual=True)
    x_src = torch.randn(25, 12, requires_grad=True)
    x_dst = torch.randn(10, 6, requires_grad=True)
    assert_same(ours, reference, ((x_src, x_dst), random_graph(25, 90, 10)))


def test_parity_gatv2_shared_weights():
    ours, reference = paired(GATv2Conv, pyg_nn.GATv2Conv, 16, 8, heads=2,
                             share_weights=True)
    assert_same(ours, reference, (torch.randn(30, 16), skewed_graph(30)))


def test_gat_bipartite_without_destination_features():
    ours, reference = paired(GATConv, pyg_nn.GATConv, (12, 6), 4, heads=2,
                             add_self_loops=False)
    inputs = ((torch.randn(25, 12), None), random_graph(25, 60, 10))
    kwargs = {"size": (25, 10)}
    torch.testing.assert_close(ours(*inputs, **kwargs),
                               reference(*inputs, **kwargs))


def test_gat_edge_update_override_gets_both_terms_as_from_pyg():
    """The kernel path sums the two node terms on the edges in one
    operator; a subclass that overrides ``edge_update`` gets them apart,
    as PyG's ``GATConv`` hands them over."""
    class Recording:
        def edge_update(self, alpha_j, alpha_i, edge_attr, index, ptr,
                        dim_size):
            self.terms = (alpha_j, alpha_i)
            return super().edge_update(alpha_j, alpha_i, edge_attr, index,
                                       ptr, dim_size)

    ours_cls = type("Ours", (Recording, GATConv), {})
    pyg_cls = type("Theirs", (Recording, pyg_nn.GATConv), {})
    ours, reference = paired(ours_cls, pyg_cls, 16, 8, heads=2)
    assert_same(ours, reference, (torch.randn(30, 16).requires_grad_(),
                                  skewed_graph(30)))
    for got, want in zip(ours.terms, reference.terms):
        # the same per-edge terms, whatever the edge order
        torch.testing.assert_close(got.sort(0).values, want.sort(0).values)


@pytest.mark.parametrize("layer", LAYERS, ids=["GAT", "GATv2"])
def test_edge_index_and_sparse_inputs(layer):
    ours, reference = paired(*layer, 8, 4, heads=2)
    x = torch.randn(20, 8)
    edge_index = random_graph(20, 70)
    expected = reference(x, edge_index)
    as_edge_index = EdgeIndex(edge_index, sparse_size=(20, 20))
    torch.testing.assert_close(ours(x, as_edge_index), expected)
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), torch.ones(70),
                                    (20, 20)).coalesce()
    for adj in (adj_t, adj_t.to_sparse_csr()):
        # duplicates collapse in a sparse adjacency; compare with PyG on it
        out, (adj_alpha, _) = ours(x, adj, return_attention_weights=True)
        ref_out, (ref_adj, _) = reference(x, adj, return_attention_weights=True)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(adj_alpha.to_dense(), ref_adj.to_dense())


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv])
def test_gradcheck_whole_layer(layer):
    conv = layer(5, 3, heads=2, edge_dim=2).double()
    edge_index = skewed_graph(7)
    x = torch.randn(7, 5, dtype=torch.double, requires_grad=True)
    edge_attr = torch.randn(edge_index.size(1), 2, dtype=torch.double,
                            requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, e: conv(a, edge_index, e),
                                    (x, edge_attr))


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv])
def test_permutation_equivariance(layer):
    conv = layer(8, 4, heads=2, edge_dim=3).eval()
    edge_index = skewed_graph(25)
    x = torch.randn(25, 8)
    edge_attr = torch.randn(edge_index.size(1), 3)
    out = conv(x, edge_index, edge_attr)
    relabel = torch.randperm(25)          # new id of old node i
    shuffle = torch.randperm(edge_index.size(1))
    x_perm = torch.empty_like(x)
    x_perm[relabel] = x
    out_perm = conv(x_perm, relabel[edge_index][:, shuffle],
                    edge_attr[shuffle])
    torch.testing.assert_close(out_perm[relabel], out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv])
@pytest.mark.parametrize("num_nodes", [0, 5])
def test_empty_graphs(layer, num_nodes):
    conv = layer(4, 3, heads=2, add_self_loops=False)
    x = torch.randn(num_nodes, 4, requires_grad=True)
    out = conv(x, torch.empty(2, 0, dtype=torch.long))
    assert out.shape == (num_nodes, 6)
    torch.testing.assert_close(out, conv.bias.expand(num_nodes, 6))
    out.sum().backward()
    assert conv.bias.grad is not None


def test_isolated_nodes_and_duplicates_match_pyg():
    ours, reference = paired(GATv2Conv, pyg_nn.GATv2Conv, 6, 4, heads=2,
                             add_self_loops=False)
    edge_index = torch.tensor([[0, 0, 0, 2], [1, 1, 1, 1]])  # 3 isolated
    x = torch.randn(6, 6)
    torch.testing.assert_close(ours(x, edge_index), reference(x, edge_index))


def test_dropout_changes_training_output_only():
    conv = GATConv(8, 4, heads=2, dropout=0.6)
    x, edge_index = torch.randn(30, 8), random_graph(30, 200)
    conv.eval()
    assert torch.equal(conv(x, edge_index), conv(x, edge_index))
    conv.train()
    assert not torch.allclose(conv(x, edge_index), conv.eval()(x, edge_index))


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv])
def test_bad_inputs_raise_clear_value_errors(layer):
    conv = layer(8, 4, edge_dim=2)
    x, edge_index = torch.randn(10, 8), random_graph(10, 30)
    edge_attr = torch.randn(30, 2)
    cases = [
        ((x, torch.tensor([[0, 10], [1, 2]])), "source node 10"),
        ((x, torch.tensor([[0, -3], [1, 2]])), "negative"),
        ((x, edge_index.float()), "integers"),
        ((x, edge_index[0]), "shape"),
        ((torch.randn(10, 7), edge_index), "7 features"),
        ((torch.randn(10), edge_index), "shape"),
        ((x.long(), edge_index), "floating-point"),
        ((x, edge_index, torch.randn(29, 2)), "one per edge"),
        ((x, edge_index, torch.randn(30, 3)), "3 features"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            conv(*args)
    with pytest.raises(ValueError, match="without edge_dim"):
        layer(8, 4)(x, edge_index, edge_attr)
    with pytest.raises(TypeError, match="edge_index"):
        conv(x, [[0, 1], [1, 0]])


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv])
def test_debug_flag_catches_nan(layer):
    conv = layer(4, 2)
    x = torch.randn(6, 4)
    x[2, 1] = float("nan")
    edge_index = random_graph(6, 10)
    conv(x, edge_index)  # no scan by default
    with gnnagg.debug(), pytest.raises(ValueError, match="NaN or Inf"):
        conv(x, edge_index)
    assert not gnnagg.is_debug_enabled()


def test_csr_view_is_shared_across_layers():
    from gnnagg.ops import cached_views
    edge_index = random_graph(20, 60)
    x = torch.randn(20, 8)
    GATv2Conv(8, 4)(GATConv(8, 8)(x, edge_index), edge_index)
    assert len(cached_views(edge_index)) == 1  # built once
    assert not [name for name in vars(edge_index) if "gnnagg" in name]

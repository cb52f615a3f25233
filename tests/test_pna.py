import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.data import Data

from gnnagg.nn import PNAConv
from gnnagg.nn.aggr import degree_histogram

from conftest import random_graph

SCALERS = ["identity", "amplification", "attenuation", "linear",
           "inverse_linear"]


def graph(num_nodes=40, num_edges=160, seed=0):
    # Duplicate edges tie exactly in min/max: the gradient must split
    # between them as PyG's does.
    edge_index = random_graph(num_nodes, num_edges, seed=seed)
    extra = torch.tensor([[1, 2, 5, 5], [1, 2, 7, 7]])
    return torch.cat([edge_index, extra, edge_index[:, :10]], dim=1)


def paired(aggregators, edge_index, num_nodes, scalers=SCALERS, **kwargs):
    deg = degree_histogram([Data(edge_index=edge_index, num_nodes=num_nodes)])
    reference = pyg_nn.PNAConv(16, 16, aggregators, scalers, deg, **kwargs)
    ours = PNAConv(16, 16, aggregators, scalers, deg, **kwargs)
    ours.load_state_dict(reference.state_dict())
    return ours.double(), reference.double()


@pytest.mark.parametrize("aggregators", [["mean", "min", "max", "std"],
                                         ["sum", "var", "softmax"]])
@pytest.mark.parametrize("kwargs", [
    {}, {"towers": 2}, {"edge_dim": 3, "towers": 4, "divide_input": True},
    {"edge_dim": 3, "towers": 4},
    {"edge_dim": 3, "pre_layers": 2, "post_layers": 2},
    {"towers": 2, "pre_layers": 2, "post_layers": 2},
    {"towers": 4, "divide_input": True, "pre_layers": 2},
    {"train_norm": True, "act": "tanh", "pre_layers": 2},
    {"scalers": ["identity"]}, {"scalers": ["linear", "attenuation"]}])
# U's first map: one matrix per distinct degree (forced at this size), or
# per scaler when there are more distinct degrees than MAX_DEGREE_GROUPS
# (0 forces that path)
@pytest.mark.parametrize("max_degree_groups", [32, 0])
# integer-valued features tie within neighbourhoods everywhere
@pytest.mark.parametrize("tied", [False, True])
def test_parity_with_pyg(aggregators, kwargs, max_degree_groups, tied,
                         degree_groups_at_any_size):
    edge_index = graph()
    ours, reference = paired(aggregators, edge_index, 40, **kwargs)
    ours.MAX_DEGREE_GROUPS = max_degree_groups
    x = (torch.randint(0, 3, (40, 16)).double() if tied else
         torch.randn(40, 16, dtype=torch.double)).requires_grad_()
    args = [x, edge_index]
    if "edge_dim" in kwargs:
        args.append(torch.randn(edge_index.size(1), 3, dtype=torch.double,
                                requires_grad=True))
    out, expected = ours(*args), reference(*args)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    leaves = [a for a in args if a.dtype == torch.double]
    got = torch.autograd.grad(out, list(ours.parameters()) + leaves, grad)
    want = torch.autograd.grad(expected, list(reference.parameters()) + leaves,
                               grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_parity_float32_to_1e5():
    edge_index = graph()
    ours, reference = paired(["mean", "min", "max", "std"], edge_index, 40,
                             edge_dim=3)
    ours, reference = ours.float(), reference.float()
    x = torch.randn(40, 16)
    edge_attr = torch.randn(edge_index.size(1), 3)
    out, expected = ours(x, edge_index, edge_attr), reference(x, edge_index,
                                                               edge_attr)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, list(ours.parameters()), grad),
                    torch.autograd.grad(expected, list(reference.parameters()),
                                        grad)):
        scale = b.abs().max().clamp(min=1)
        torch.testing.assert_close(a / scale, b / scale, rtol=1e-5, atol=1e-5)


def test_both_paths_used():
    edge_index = graph()
    decomposed, _ = paired(["mean", "max"], edge_index, 40)
    general, _ = paired(["mean", "softmax"], edge_index, 40)
    assert decomposed._statistics == ["mean", "max"]
    assert general._statistics is None


def test_isolated_nodes_and_empty_graph():
    edge_index = torch.tensor([[0, 1, 2], [1, 1, 1]])  # nodes 0, 2-5 isolated
    ours, reference = paired(["mean", "min", "max", "std"], graph(), 40)
    x = torch.randn(6, 16, dtype=torch.double)
    out = ours(x, edge_index)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference(x, edge_index))
    no_edges = torch.empty(2, 0, dtype=torch.long)
    torch.testing.assert_close(ours(x, no_edges), reference(x, no_edges))
    no_nodes = torch.empty(0, 16, dtype=torch.double)
    assert ours(no_nodes, no_edges).shape == (0, 16)


def test_permutation_equivariance():
    edge_index = graph()
    ours, _ = paired(["mean", "min", "max", "std"], edge_index, 40)
    x = torch.randn(40, 16, dtype=torch.double)
    relabel = torch.randperm(40)
    x_perm = torch.empty_like(x)
    x_perm[relabel] = x
    shuffle = torch.randperm(edge_index.size(1))
    torch.testing.assert_close(
        ours(x_perm, relabel[edge_index][:, shuffle])[relabel],
        ours(x, edge_index))


def test_bad_inputs():
    edge_index = graph()
    ours, _ = paired(["mean"], edge_index, 40, edge_dim=3)
    x = torch.randn(40, 16, dtype=torch.double)
    with pytest.raises(ValueError, match="features per node"):
        ours(torch.randn(40, 15, dtype=torch.double), edge_index)
    with pytest.raises(ValueError, match="one per edge"):
        ours(x, edge_index, torch.randn(3, 3, dtype=torch.double))
    with pytest.raises(ValueError, match="source node"):
        ours(x, torch.tensor([[0, 40], [1, 2]]))
    with pytest.raises(ValueError, match="divisible"):
        PNAConv(16, 15, ["mean"], ["identity"], torch.tensor([1, 2]),
                towers=2)

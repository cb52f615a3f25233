"""PNASimpleConv against the same layer from PyG's parts (SimpleConv with
PyG's DegreeScalerAggregation, then Linear), with copied weights."""
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.explain import Explainer, GNNExplainer

from gnnagg.bench.reproduce.pna_molhiv import PyGPNASimpleConv
from gnnagg.nn import PNASimpleConv
from gnnagg.nn.aggr import degree_histogram

from test_pna import SCALERS, graph

STATISTICS = ["mean", "min", "max", "std"]


def paired(aggregators, edge_index, num_nodes, scalers=SCALERS,
           in_channels=16):
    deg = degree_histogram([Data(edge_index=edge_index, num_nodes=num_nodes)])
    reference = PyGPNASimpleConv(in_channels, 8, aggregators, scalers, deg)
    ours = PNASimpleConv(in_channels, 8, aggregators, scalers, deg)
    ours.load_state_dict(reference.state_dict())
    return ours.double(), reference.double()


def assert_same_outputs_and_gradients(ours, reference, x, edge_index):
    out, expected = ours(x, edge_index), reference(x, edge_index)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x] + list(ours.parameters()), grad)
    want = torch.autograd.grad(expected, [x] + list(reference.parameters()),
                               grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


# statistics run from node values; softmax and powermean on the gathered
# messages
@pytest.mark.parametrize("aggregators", [STATISTICS, ["sum", "var"],
                                         ["softmax", "max", "powermean"]])
@pytest.mark.parametrize("scalers", [SCALERS, ["identity"]])
# lin: one matrix per distinct degree (forced at this size), or per scaler
# (0 forces that path)
@pytest.mark.parametrize("max_degree_groups", [32, 0])
# integer-valued features tie within neighbourhoods everywhere, and the
# graph has duplicate edges; none is 0, where PyG's scatter counts its
# zero-initialised output as one more tie (gnnagg.ops.segment)
@pytest.mark.parametrize("tied", [False, True])
def test_parity_with_pyg_parts(aggregators, scalers, max_degree_groups,
                               tied, degree_groups_at_any_size):
    edge_index = graph()
    ours, reference = paired(aggregators, edge_index, 40, scalers)
    ours.MAX_DEGREE_GROUPS = max_degree_groups
    x = (torch.randint(1, 4, (40, 16)).double() if tied else
         torch.randn(40, 16, dtype=torch.double)).requires_grad_()
    assert_same_outputs_and_gradients(ours, reference, x, edge_index)


def test_bipartite_and_isolated_destinations():
    edge_index = torch.tensor([[0, 1, 2, 2, 4], [0, 0, 1, 1, 3]])
    ours, reference = paired(STATISTICS, edge_index, 6)
    source = torch.randn(5, 16, dtype=torch.double, requires_grad=True)
    target = torch.randn(6, 16, dtype=torch.double)
    out = ours((source, target), edge_index)
    assert out.shape == (6, 8)
    torch.testing.assert_close(out, reference((source, target), edge_index))
    # destinations without in-edges get the bias alone
    torch.testing.assert_close(out[[2, 4, 5]],
                               ours.lin.bias.expand(3, -1))


def test_gradcheck_float64():
    edge_index = graph(12, 40)
    ours, _ = paired(STATISTICS, edge_index, 12, in_channels=3)
    x = torch.randn(12, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ours(t, edge_index), (x,))


def test_message_path_under_hooks_and_explainer():
    edge_index = graph()
    ours, _ = paired(STATISTICS, edge_index, 40)
    x = torch.randn(40, 16, dtype=torch.double)
    fused = ours(x, edge_index)
    seen = []
    handle = ours.register_message_forward_hook(
        lambda module, inputs, out: seen.append(out.shape))
    torch.testing.assert_close(ours(x, edge_index), fused)
    handle.remove()
    assert seen == [(edge_index.size(1), 16)]
    explainer = Explainer(ours.float(), GNNExplainer(epochs=2), "model",
                          edge_mask_type="object",
                          model_config=dict(mode="regression",
                                            task_level="node",
                                            return_type="raw"))
    explanation = explainer(x.float(), edge_index)
    assert explanation.edge_mask.shape == (edge_index.size(1),)


def test_lazy_input_size_and_repr():
    edge_index = graph()
    deg = degree_histogram([Data(edge_index=edge_index, num_nodes=40)])
    conv = PNASimpleConv(-1, 8, ["mean", "max"], ["identity"], deg)
    assert conv(torch.randn(40, 5), edge_index).shape == (40, 8)
    assert conv.lin.weight.shape == (8, 10)
    assert repr(conv) == ("PNASimpleConv(-1, 8, aggregators=['mean', 'max'], "
                          "scalers=['identity'])")


def test_bad_inputs():
    edge_index = graph()
    ours, _ = paired(["mean"], edge_index, 40)
    x = torch.randn(40, 16, dtype=torch.double)
    with pytest.raises(ValueError, match="features per node"):
        ours(torch.randn(40, 15, dtype=torch.double), edge_index)
    with pytest.raises(ValueError, match="source node"):
        ours(x, torch.tensor([[0, 40], [1, 2]]))
    with pytest.raises(TypeError, match="dtype"):
        ours(x.float(), edge_index)
    with pytest.raises(ValueError, match="unknown scaler"):
        PNASimpleConv(16, 8, ["mean"], ["double"], torch.tensor([1, 2]))

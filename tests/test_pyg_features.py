"""PyG features built on the classes gnnagg replaces keep working with
gnnagg's: explainers, message-passing hooks, BasicGNN models, HeteroConv,
to_hetero, pickling, flow, aggr=, lazy sizes, convolutions that size
themselves from a MultiAggregation, double backward. Each case is checked
against PyG's own class with the same weights."""
import copy
import io
import json
import pathlib
import pickle
import subprocess
import sys

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.data import HeteroData
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import AttentionExplainer, GNNExplainer
from torch_geometric.nn import HeteroConv, SAGEConv, to_hetero

import gnnagg.models as models
from test_dtypes import PAIRS as DTYPE_PAIRS
from test_dtypes import inputs as dtype_inputs
from test_dtypes import paired
from gnnagg.nn import GATConv, GATv2Conv, PNAConv
from gnnagg.nn.aggr import (DegreeScalerAggregation, MultiAggregation,
                            SoftmaxAggregation)

ATTENTION = [(GATConv, pyg_nn.GATConv), (GATv2Conv, pyg_nn.GATv2Conv)]


def graph(num_nodes=8, num_edges=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 6, generator=gen)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    return x, edge_index


def pair(ours_cls, theirs_cls, *args, **kwargs):
    torch.manual_seed(0)
    ours = ours_cls(*args, **kwargs)
    theirs = theirs_cls(*args, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def pna_args():
    return dict(aggregators=["mean", "max", "std"],
                scalers=["identity", "amplification"],
                deg=torch.tensor([1, 3, 4, 2]))


class Net(torch.nn.Module):
    def __init__(self, layer, **kwargs):
        super().__init__()
        self.conv1 = layer(6, 4, **kwargs)
        self.conv2 = layer(4 * kwargs.get("heads", 1), 3, **kwargs)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


@pytest.mark.parametrize("ours,theirs", ATTENTION)
def test_attention_explainer_collects_the_coefficients(ours, theirs):
    x, edge_index = graph()
    nets = [Net(layer, heads=2) for layer in (ours, theirs)]
    nets[1].load_state_dict(nets[0].state_dict())
    masks = []
    for net in nets:
        explainer = Explainer(net, AttentionExplainer(), explanation_type=
                              "model", edge_mask_type="object",
                              model_config=dict(mode="multiclass_classification",
                                                task_level="node",
                                                return_type="raw"))
        masks.append(explainer(x, edge_index, index=2).edge_mask)
    torch.testing.assert_close(masks[0], masks[1])
    assert masks[0].abs().sum() > 0


@pytest.mark.parametrize("ours,theirs", ATTENTION + [(PNAConv, PNAConv)])
def test_gnn_explainer_gets_edge_gradients(ours, theirs):
    x, edge_index = graph()
    kwargs = pna_args() if ours is PNAConv else {}
    torch.manual_seed(1)
    net = Net(ours, **kwargs)
    explainer = Explainer(net, GNNExplainer(epochs=3),
                          explanation_type="model", edge_mask_type="object",
                          node_mask_type="attributes",
                          model_config=dict(mode="multiclass_classification",
                                            task_level="node",
                                            return_type="raw"))
    explanation = explainer(x, edge_index, index=1)
    assert explanation.edge_mask.shape == (edge_index.size(1),)
    assert explanation.edge_mask.abs().sum() > 0


@pytest.mark.parametrize("ours,theirs", ATTENTION)
def test_explain_mode_runs_the_message_path_with_masks(ours, theirs):
    from torch_geometric.explain.algorithm.utils import (clear_masks,
                                                          set_masks)
    x, edge_index = graph()
    layers = pair(ours, theirs, 6, 4, heads=2)
    mask = torch.randn(edge_index.size(1))
    outs = []
    for layer in layers:
        set_masks(layer, mask, edge_index, apply_sigmoid=True)
        outs.append(layer(x, edge_index))
        clear_masks(layer)
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], layers[0](x, edge_index))
    torch.testing.assert_close(layers[0](x, edge_index),
                               layers[1](x, edge_index))


@pytest.mark.parametrize("ours,theirs", ATTENTION + [(PNAConv,
                                                      pyg_nn.PNAConv)])
def test_message_hooks_see_pyg_messages(ours, theirs):
    x, edge_index = graph()
    kwargs = pna_args() if ours is PNAConv else {}
    layers = pair(ours, theirs, 6, 4, **kwargs)
    seen, outs = [], []
    for layer in layers:
        shapes = []
        handle = layer.register_message_forward_hook(
            lambda module, inputs, out, shapes=shapes: shapes.append(
                (tuple(out.shape), sorted(inputs[0]))))
        outs.append(layer(x, edge_index))
        handle.remove()
        seen.append(shapes)
    assert seen[0] == seen[1] and len(seen[0]) == 1
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("ours,theirs", ATTENTION)
def test_hook_that_changes_messages_changes_the_output(ours, theirs):
    x, edge_index = graph()
    layers = pair(ours, theirs, 6, 4)
    outs = []
    for layer in layers:
        layer.register_message_forward_hook(lambda m, i, out: out * 2)
        outs.append(layer(x, edge_index))
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("ours,theirs", ATTENTION)
def test_propagate_hooks_run_on_the_fused_path(ours, theirs):
    x, edge_index = graph()
    layer, reference = pair(ours, theirs, 6, 4)
    calls = []
    layer.register_propagate_forward_hook(
        lambda module, inputs, out: calls.append(out.shape) or out * 3)
    fused = []
    layer.register_message_and_aggregate_forward_hook(
        lambda module, inputs, out: fused.append(1))
    torch.testing.assert_close(layer(x, edge_index),
                               3 * reference(x, edge_index) -
                               2 * reference.bias)
    assert calls == [torch.Size([8, 1, 4])] and fused == [1]


@pytest.mark.parametrize("ours,theirs", ATTENTION)
@pytest.mark.parametrize("options", [dict(flow="target_to_source"),
                                     dict(aggr="mean"), dict(aggr="max")])
def test_flow_aggr_and_decomposed_layers_as_pyg(ours, theirs, options):
    x, edge_index = graph()
    layers = pair(ours, theirs, 6, 4, heads=2, **options)
    assert not layers[0].fuse
    torch.testing.assert_close(layers[0](x, edge_index),
                               layers[1](x, edge_index))


@pytest.mark.parametrize("ours,theirs", ATTENTION)
def test_lazy_in_channels(ours, theirs):
    x, edge_index = graph()
    torch.manual_seed(0)
    layer = ours(-1, 4, heads=2)
    assert str(layer) == str(theirs(-1, 4, heads=2))
    out = layer(x, edge_index)
    assert out.shape == (8, 8)
    reference = theirs(6, 4, heads=2)
    reference.load_state_dict(layer.state_dict())
    torch.testing.assert_close(out, reference(x, edge_index))


def test_basic_gnn_models_match_pyg():
    x, edge_index = graph()
    for v2 in (False, True):
        torch.manual_seed(0)
        ours = models.GAT(6, 8, num_layers=3, out_channels=2, v2=v2,
                          heads=2, jk="cat")
        theirs = pyg_nn.models.GAT(6, 8, num_layers=3, out_channels=2,
                                   v2=v2, heads=2, jk="cat")
        theirs.load_state_dict(ours.state_dict())
        assert isinstance(ours.convs[0], GATv2Conv if v2 else GATConv)
        assert str(ours) == str(theirs)
        torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index))
    torch.manual_seed(0)
    ours = models.PNA(6, 8, num_layers=2, out_channels=2, **pna_args())
    theirs = pyg_nn.models.PNA(6, 8, num_layers=2, out_channels=2,
                               **pna_args())
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours.convs[0], PNAConv)
    torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index))


def hetero_graph():
    data = HeteroData()
    data["paper"].x = torch.randn(6, 5)
    data["author"].x = torch.randn(4, 3)
    data["author", "writes", "paper"].edge_index = torch.tensor(
        [[0, 1, 2, 3, 3], [0, 2, 4, 5, 1]])
    data["paper", "cites", "paper"].edge_index = torch.tensor(
        [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    return data


def test_hetero_conv_matches_pyg():
    data = hetero_graph()
    outs = []
    for gat in (GATConv, pyg_nn.GATConv):
        torch.manual_seed(0)
        conv = HeteroConv({
            ("author", "writes", "paper"): gat((3, 5), 4,
                                               add_self_loops=False),
            ("paper", "cites", "paper"): gat(5, 4),
        }, aggr="sum")
        outs.append(conv(data.x_dict, data.edge_index_dict)["paper"])
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv])
def test_to_hetero_matches_pyg(layer):
    data = hetero_graph()
    data["author"].x = torch.randn(4, 5)  # one lazy size for every type
    reference = {GATConv: pyg_nn.GATConv, GATv2Conv: pyg_nn.GATv2Conv}[layer]
    outs = []
    for conv in (layer, reference):
        class Model(torch.nn.Module):
            def __init__(self, conv=conv):
                super().__init__()
                self.conv = conv((-1, -1), 4, add_self_loops=False)

            def forward(self, x, edge_index):
                return self.conv(x, edge_index)

        torch.manual_seed(0)
        model = to_hetero(Model(), data.metadata(), aggr="sum")
        outs.append(model(data.x_dict, data.edge_index_dict)["paper"])
        if conv is layer:
            state = model.state_dict()
        else:
            model.load_state_dict(state)
            outs[-1] = model(data.x_dict, data.edge_index_dict)["paper"]
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("make", [
    lambda: GATConv(6, 4, heads=2), lambda: GATv2Conv(6, 4),
    lambda: PNAConv(6, 4, **pna_args()),
    lambda: MultiAggregation(["mean", "max", "std"]),
    lambda: SoftmaxAggregation(learn=True),
    lambda: DegreeScalerAggregation(["mean", "max"], ["identity", "linear"],
                                    torch.tensor([1, 2, 3]))])
def test_pickle_deepcopy_and_torch_save(make):
    module = make().eval()
    x, edge_index = graph()
    messages = torch.randn(edge_index.size(1), 6)
    run = ((lambda m: m(x, edge_index)) if hasattr(module, "propagate")
           else (lambda m: m(messages, edge_index[1], dim_size=8)))
    expected = run(module)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    for copy_ in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module),
                  torch.load(buffer, weights_only=False)):
        torch.testing.assert_close(run(copy_), expected)


def test_sage_conv_sizes_itself_from_our_multi_aggregation():
    x, edge_index = graph()
    outs = []
    for multi in (MultiAggregation, pyg_nn.aggr.MultiAggregation):
        torch.manual_seed(0)
        conv = SAGEConv(6, 5, aggr=multi(["mean", "max", "std"]))
        outs.append(conv(x, edge_index))
    assert outs[0].shape == (8, 5)
    torch.testing.assert_close(outs[0], outs[1])
    for mode, kwargs in [("proj", dict(in_channels=6, out_channels=6)),
                         ("attn", dict(in_channels=6, out_channels=6,
                                       num_heads=2)), ("sum", None)]:
        torch.manual_seed(0)
        ours = SAGEConv(6, 5, aggr=MultiAggregation(
            ["mean", "max"], mode=mode, mode_kwargs=kwargs))
        torch.manual_seed(0)
        theirs = SAGEConv(6, 5, aggr=pyg_nn.aggr.MultiAggregation(
            ["mean", "max"], mode=mode, mode_kwargs=kwargs))
        theirs.load_state_dict(ours.state_dict())
        torch.testing.assert_close(ours(x, edge_index),
                                   theirs(x, edge_index))


def test_classes_are_their_pyg_namesakes():
    import gnnagg.nn.aggr as ours_aggr
    for name in ["SumAggregation", "MeanAggregation", "MaxAggregation",
                 "MinAggregation", "MulAggregation", "VarAggregation",
                 "StdAggregation", "SoftmaxAggregation",
                 "PowerMeanAggregation", "MultiAggregation",
                 "LCMAggregation", "DegreeScalerAggregation"]:
        assert issubclass(getattr(ours_aggr, name),
                          getattr(pyg_nn.aggr, name))
    for name in ["GATConv", "GATv2Conv", "PNAConv"]:
        import gnnagg.nn as ours_nn
        assert issubclass(getattr(ours_nn, name), getattr(pyg_nn, name))
    assert PNAConv.get_degree_histogram is pyg_nn.PNAConv.get_degree_histogram


def test_explain_mode_works_whichever_class_was_built_first():
    # PyG's layers built before gnnagg's (as in a notebook that compares
    # them): explain mode must still apply the masks
    from torch_geometric.explain.algorithm.utils import set_masks
    x, edge_index = graph()
    for ours, theirs in ATTENTION:
        theirs(6, 4)
        layer, reference = pair(ours, theirs, 6, 4)
        mask = torch.randn(edge_index.size(1))
        for module in (layer, reference):
            set_masks(module, mask, edge_index, apply_sigmoid=True)
        torch.testing.assert_close(layer(x, edge_index),
                                   reference(x, edge_index))


def _scripted(module):
    """``torch.jit.script(module)``, or the error it raised."""
    try:
        return torch.jit.script(module)
    except Exception as error:  # TorchScript raises several kinds
        return error


@pytest.mark.parametrize("ours,theirs,kwargs", [
    (GATConv, pyg_nn.GATConv, {}), (GATv2Conv, pyg_nn.GATv2Conv, {}),
    (PNAConv, pyg_nn.PNAConv, dict(pna_args(), edge_dim=3, towers=2)),
    (PNAConv, pyg_nn.PNAConv, dict(pna_args(), edge_dim=3, divide_input=True,
                                   towers=2, pre_layers=2)),
    # PyG's PNAConv without edge features does not script (its message
    # reads an edge encoder it lacks): nor does ours
    (PNAConv, pyg_nn.PNAConv, pna_args())])
def test_torch_jit_script_as_pyg(ours, theirs, kwargs):
    """torch.jit.script works where it works for PyG's class (it compiles
    PyG's twin of the layer, sharing its parameters), with PyG's outputs;
    the scripted module saves and loads; the layer itself stays gnnagg's,
    on its fused path."""
    mine, reference = pair(ours, theirs, 6, 4, **kwargs)
    x, edge_index = graph()
    args = (x, edge_index) + ((torch.randn(edge_index.size(1), 3),)
                              if kwargs.get("edge_dim") else ())
    with torch.no_grad():
        expected = reference(*args)
    scripted, reference_scripted = _scripted(mine), _scripted(reference)
    assert isinstance(scripted, Exception) == isinstance(reference_scripted,
                                                         Exception)
    assert type(mine) is ours and type(mine.aggr_module).__module__ \
        .startswith("gnnagg") if ours is PNAConv else type(mine) is ours
    if isinstance(scripted, Exception):
        assert type(scripted) is type(reference_scripted)
        return
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        for module in (scripted, loaded, mine):
            torch.testing.assert_close(module(*args), expected)
    assert next(scripted.parameters()).data_ptr() in {
        p.data_ptr() for p in mine.parameters()}


def test_torch_jit_script_of_a_model_puts_the_twin_in_place():
    """Scripting a model that holds a gnnagg layer compiles PyG's twin and,
    as torch does for every ``__prepare_scriptable__``, leaves the twin in
    the model: same parameters, same outputs."""
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = PNAConv(6, 4, edge_dim=3, **pna_args())

        def forward(self, x, edge_index, edge_attr):
            return self.conv(x, edge_index, edge_attr).relu()

    model = Model()
    x, edge_index = graph()
    edge_attr = torch.randn(edge_index.size(1), 3)
    with torch.no_grad():
        expected = model(x, edge_index, edge_attr)
    scripted = torch.jit.script(model)
    assert type(model.conv) is pyg_nn.PNAConv
    with torch.no_grad():
        torch.testing.assert_close(scripted(x, edge_index, edge_attr),
                                   expected)
        torch.testing.assert_close(model(x, edge_index, edge_attr), expected)


@pytest.mark.parametrize("name", sorted(DTYPE_PAIRS))
def test_double_backward_as_pyg(name):
    """Second derivatives (``create_graph=True``: gradient penalties, forces
    from an energy) through every layer and aggregation equal those through
    PyG's namesake with the same weights, duplicate edges included: of the
    inputs and of every parameter."""
    results = []
    for module in paired(name):
        module = module.double()
        leaves = [a.double().requires_grad_() if a.is_floating_point()
                  else a for a in dtype_inputs(name)]
        floats = [a for a in leaves if a.requires_grad]
        out = module(*leaves)
        first = torch.autograd.grad(out.pow(2).sum(), floats,
                                    create_graph=True)
        penalty = sum(g.pow(2).sum() for g in first)
        second = torch.autograd.grad(penalty, floats +
                                     list(module.parameters()),
                                     allow_unused=True)
        results.append(second)
    assert any(g is not None and g.abs().sum() > 0 for g in results[0])
    for got, want in zip(*results, strict=True):
        if want is None or got is None:  # zero either way
            assert (got if want is None else want) is None or \
                not (got if want is None else want).any()
        else:
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", sorted(DTYPE_PAIRS))
def test_torch_func_grad_as_pyg(name):
    """``torch.func.grad`` (which records its backward pass) through every
    layer and aggregation gives PyG's gradient."""
    grads = []
    for module in paired(name):
        module = module.double()
        x, *rest = [a.double() if a.is_floating_point() else a
                    for a in dtype_inputs(name)]
        grads.append(torch.func.grad(
            lambda v, m=module, r=rest: m(v, *r).pow(2).sum())(x))
    assert grads[1].abs().sum() > 0
    torch.testing.assert_close(*grads)


FIRST_CALLS = """
import json, sys, warnings
from test_dtypes import PAIRS, inputs
side = int(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    for name, makers in sorted(PAIRS.items()):
        makers[side]()(*inputs(name)).sum().backward()
print(json.dumps(sorted({str(w.message) for w in caught
                         if not issubclass(w.category, DeprecationWarning)})))
"""


def test_first_calls_warn_nothing_pyg_does_not():
    """A fresh process's first forward and backward through every layer and
    aggregation shows the user no warning (torch's sparse-beta notice, for
    one) that the same calls of PyG's classes do not show."""
    shown = [set(json.loads(subprocess.run(
        [sys.executable, "-c", FIRST_CALLS, str(side)], check=True,
        capture_output=True, text=True,
        cwd=pathlib.Path(__file__).parent).stdout)) for side in (0, 1)]
    assert shown[0] <= shown[1], shown[0] - shown[1]

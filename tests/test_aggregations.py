import pytest
import torch
import torch_geometric.nn.aggr as pyg_aggr
from hypothesis import given, settings, strategies as st
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MessagePassing

import gnnagg.nn.aggr as aggr
from gnnagg.ops import csr_view, neighbor_stats, segment_stats, shift_stats

from conftest import random_graph, skewed_graph

NAMES = ["Sum", "Mean", "Min", "Max", "Var", "Std", "Softmax", "PowerMean"]


def _messages(num_messages=120, num_nodes=15, channels=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_messages, channels, generator=gen, dtype=torch.double)
    index = torch.randint(0, num_nodes, (num_messages,), generator=gen)
    index[index == 3] = 4  # node 3 has no messages
    return x, index


@pytest.mark.parametrize("name", NAMES)
def test_matches_pyg_values_and_gradients(name):
    ours = getattr(aggr, f"{name}Aggregation")()
    reference = getattr(pyg_aggr, f"{name}Aggregation")()
    x, index = _messages()
    if name == "PowerMean":
        ours, reference = aggr.PowerMeanAggregation(p=2.5), \
            pyg_aggr.PowerMeanAggregation(p=2.5)
        x = x.abs() + 0.1
    x.requires_grad_()
    out = ours(x, index, dim_size=15)
    expected = reference(x, index, dim_size=15)
    has_messages = torch.bincount(index, minlength=15) > 0
    torch.testing.assert_close(out[has_messages], expected[has_messages])
    grad = torch.randn_like(out) * has_messages.view(-1, 1)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0],
                               torch.autograd.grad(expected, x, grad)[0])


@pytest.mark.parametrize("name", NAMES)
def test_empty_nodes_and_empty_graphs_give_zero(name):
    module = getattr(aggr, f"{name}Aggregation")()
    x, index = _messages()
    out = module(x, index, dim_size=15)
    assert torch.isfinite(out).all()
    assert torch.equal(out[3], torch.zeros(6, dtype=torch.double))
    empty = module(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long),
                   dim_size=4)
    assert torch.equal(empty, torch.zeros(4, 6))


def test_std_gradient_finite_at_zero_variance():
    x = torch.ones(6, 3, requires_grad=True)  # every node: identical messages
    out = aggr.StdAggregation()(x, torch.tensor([0, 0, 0, 1, 1, 2]),
                                dim_size=3)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(3, 3))
    assert torch.isfinite(x.grad).all()


def test_learnable_softmax_temperature_gets_gradient():
    module = aggr.SoftmaxAggregation(t=0.5, learn=True, channels=6)
    x, index = _messages()
    module(x.float(), index, dim_size=15).sum().backward()
    assert module.t.grad is not None and module.t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not trainable"):  # PyG's words
        aggr.SoftmaxAggregation(channels=3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), num_messages=st.integers(0, 60),
       name=st.sampled_from(NAMES + ["Multi"]))
def test_permutation_invariance(seed, num_messages, name):
    module = (aggr.MultiAggregation(["mean", "min", "max", "std", "softmax"])
              if name == "Multi" else getattr(aggr, f"{name}Aggregation")())
    x, index = _messages(num_messages, seed=seed)
    if name == "PowerMean":
        x = x.abs()
    shuffle = torch.randperm(num_messages,
                             generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(module(x, index, dim_size=15),
                               module(x[shuffle], index[shuffle], dim_size=15))


def test_multi_aggregation_matches_pyg_and_never_sorts(monkeypatch):
    names = ["mean", "min", "max", "std", "softmax"]
    ours = aggr.MultiAggregation(names)
    x, index = _messages()
    expected = pyg_aggr.MultiAggregation(names)(x, index, dim_size=15)
    calls = []
    import gnnagg.nn.aggr.base as base
    original = base.csr_from_index
    monkeypatch.setattr(base, "csr_from_index",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    torch.testing.assert_close(ours(x, index, dim_size=15), expected)
    assert calls == []  # reduced by index: no grouping, no sort
    with_tree = aggr.MultiAggregation(["mean",
                                       aggr.LCMAggregation(6, 6).double()])
    with_tree(x, index, dim_size=15)
    assert len(calls) == 1  # a tree needs the messages grouped: sorted once


def test_multi_aggregation_shares_reductions_for_pna_stats(monkeypatch):
    import gnnagg.ops.statistics as module
    calls = []
    for name in ("reduce_messages", "message_moments"):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, name=name, original=(
            original): calls.append(a[3] if name == "reduce_messages"
                                    else "moments") or original(*a))
    x, index = _messages()
    aggr.MultiAggregation(["mean", "min", "max", "std"])(x, index,
                                                         dim_size=15)
    # mean and std from one moments operator (the sums of x and x*x),
    # max, min: PyG's separate aggregations take six reductions
    assert sorted(calls) == ["max", "min", "moments"]
    calls.clear()
    aggr.MultiAggregation(["mean", "var", "std"])(x, index, dim_size=15)
    assert calls == ["moments"]
    calls.clear()
    aggr.MultiAggregation(["sum", "var"])(x, index, dim_size=15)
    assert sorted(calls) == ["moments", "sum"]  # the sum itself, exact


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("large", [False, True])
def test_reduction_backward_keeps_no_copy_of_the_messages(monkeypatch,
                                                          reduce, large):
    """A sum or mean of unsorted messages saves only the index for its
    backward, in both regimes (a large input's ``index_add_`` would keep
    the messages alive through its own autograd); max and min need them."""
    import gnnagg.ops.segment as segment
    if large:  # every input counts as large
        monkeypatch.setattr(segment, "SMALL_SCATTER", 0)
    x, index = _messages()
    x = x.clone().requires_grad_()
    messages, saved = x * 1, []

    def pack(tensor):
        saved.append(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = segment.reduce_messages(messages, index, 15, reduce)
    keeps_messages = messages.untyped_storage().data_ptr() in saved
    assert keeps_messages == (reduce == "max")
    expected = pyg_aggr.Aggregation().reduce(x, index, dim_size=15,
                                             reduce=reduce)
    grad = torch.randn_like(out)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0],
                               torch.autograd.grad(expected, x, grad)[0])


def test_sorted_ptr_input_matches_index_input():
    x, index = _messages()
    order = torch.argsort(index, stable=True)
    ptr = torch.zeros(16, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(index, minlength=15), 0)
    module = aggr.MultiAggregation(["sum", "max", "var"])
    torch.testing.assert_close(module(x[order], ptr=ptr),
                               module(x, index, dim_size=15))


@pytest.mark.parametrize("name", NAMES + ["Multi"])
def test_usable_as_aggr_of_any_message_passing(name):
    class Plain(MessagePassing):
        def forward(self, x, edge_index):
            return self.propagate(edge_index, x=x)

    make = ((lambda m: m.MultiAggregation(["mean", "max"]))
            if name == "Multi" else
            (lambda m: getattr(m, f"{name}Aggregation")()))
    edge_index = skewed_graph(12)
    x = torch.rand(12, 5) + 0.1
    torch.testing.assert_close(Plain(aggr=make(aggr))(x, edge_index),
                               Plain(aggr=make(pyg_aggr))(x, edge_index))


@pytest.mark.parametrize("name", NAMES + ["Multi"])
def test_repeated_aggr_calls_on_one_graph_match_pyg(name):
    """The reductions run on the index's cached grouping: every call gives
    PyG's values and gradients, with duplicate edges and tied messages."""
    from torch_geometric.nn import SAGEConv
    from gnnagg.ops.csr import message_grouping
    make = ((lambda m: m.MultiAggregation(["mean", "max", "std"]))
            if name == "Multi" else
            (lambda m: getattr(m, f"{name}Aggregation")()))
    torch.manual_seed(0)
    edge_index = torch.cat([skewed_graph(12), skewed_graph(12)[:, :9]], 1)
    x = torch.randint(1, 4, (12, 5)).double()  # ties
    ours = SAGEConv(5, 4, aggr=make(aggr)).double()
    reference = SAGEConv(5, 4, aggr=make(pyg_aggr)).double()
    ours.load_state_dict(reference.state_dict())
    for _ in range(3):
        leaf, expected_leaf = x.clone().requires_grad_(), \
            x.clone().requires_grad_()
        out, expected = ours(leaf, edge_index), \
            reference(expected_leaf, edge_index)
        torch.testing.assert_close(out, expected)
        grad = torch.randn_like(out)
        torch.testing.assert_close(
            torch.autograd.grad(out, leaf, grad)[0],
            torch.autograd.grad(expected, expected_leaf, grad)[0])
    assert message_grouping(edge_index[1], 12) is not None


@pytest.mark.parametrize("name", ["Sum", "Mean", "Max", "Std", "Softmax"])
def test_repeated_aggr_calls_give_the_same_bits(name):
    """Every call on a graph runs the same kernel (the grouping is built on
    the first): a second forward equals the first exactly."""
    from torch_geometric.nn import SAGEConv
    torch.manual_seed(0)
    conv = SAGEConv(8, 8, aggr=getattr(aggr, f"{name}Aggregation")())
    edge_index = torch.randint(0, 50, (2, 400))
    x = torch.randn(50, 8)
    first = conv(x, edge_index)
    for _ in range(2):
        assert torch.equal(conv(x, edge_index), first)


@pytest.mark.parametrize("make", [
    lambda: aggr.LCMAggregation(5, 5), lambda: aggr.TopMAttentionAggregation(
        5, m=2), lambda: aggr.MultiAggregation(["mean", aggr.LCMAggregation(
            5, 5)])], ids=["lcm", "topm", "multi-with-tree"])
def test_grouping_aggregations_on_a_cached_view_equal_a_fresh_one(
        make, monkeypatch):
    """Aggregations that group the messages sort a graph once: from the
    second call on they reuse its CSR view, with the outputs and gradients
    of a freshly sorted graph."""
    from torch_geometric.nn import SAGEConv
    import gnnagg.ops.csr as csr_module
    from gnnagg.ops import clear_csr_cache
    sorts = []
    build = csr_module._messages_csr
    monkeypatch.setattr(csr_module, "_messages_csr",
                        lambda *a: sorts.append(1) or build(*a))
    torch.manual_seed(0)
    conv = SAGEConv(5, 4, aggr=make()).double()
    edge_index = torch.cat([skewed_graph(12), skewed_graph(12)[:, :9]], 1)
    x = torch.randn(12, 5, dtype=torch.double)
    results = []
    for fresh in (True, False, False):
        if fresh:
            clear_csr_cache()
        leaf = x.clone().requires_grad_()
        out = conv(leaf, edge_index)
        results.append((out, torch.autograd.grad(out.sum(), leaf)[0]))
    assert len(sorts) == 1
    for later in results[1:]:
        torch.testing.assert_close(later[0], results[0][0])
        torch.testing.assert_close(later[1], results[0][1])


def test_bad_index_raises_value_error():
    x = torch.randn(4, 2)
    past_dim_size = torch.tensor([0, 1, 5, 1])
    for _ in range(3):  # the same error whether grouped or not
        with pytest.raises(ValueError, match="invalid 'dim_size'"):  # PyG's
            aggr.SumAggregation()(x, past_dim_size, dim_size=3)
    with pytest.raises(ValueError, match="negative"):
        aggr.SumAggregation()(x, torch.tensor([0, -1, 2, 1]), dim_size=3)
    with pytest.raises(ValueError, match="4 messages"):
        aggr.SumAggregation()(x, torch.tensor([0, 1, 2]), dim_size=3)
    with pytest.raises(ValueError, match="ptr"):
        aggr.SumAggregation()(x, ptr=torch.tensor([0, 2, 9]))
    with pytest.raises(ValueError, match="resolve"):
        aggr.MultiAggregation(["mean", "no_such_aggregation"])
    with pytest.raises(ValueError, match="unknown statistic"):
        segment_stats(x, torch.tensor([0, 4]), ["median"])


def test_degree_scalers_follow_their_formulas():
    deg_hist = torch.tensor([1, 4, 3, 2])   # degrees 0,1,2,3
    nodes = deg_hist.sum().float()
    avg_lin = (torch.arange(4) * deg_hist).sum() / nodes
    avg_log = ((torch.arange(4) + 1).float().log() * deg_hist).sum() / nodes
    scalers = ["identity", "amplification", "attenuation", "linear",
               "inverse_linear"]
    module = aggr.DegreeScalerAggregation("sum", scalers, deg_hist)
    assert module.avg_deg_lin.item() == pytest.approx(avg_lin.item())
    assert module.avg_deg_log.item() == pytest.approx(avg_log.item())
    index = torch.tensor([0, 0, 0, 1, 2, 2])   # degrees 3, 1, 2, 0
    x = torch.ones(6, 1)
    out = module(x, index, dim_size=4)
    d = torch.tensor([3.0, 1.0, 2.0, 0.0])
    s = d  # the sum of ones
    expected = torch.stack([
        s, s * torch.log(d + 1) / avg_log,
        s * avg_log / torch.log(d.clamp(min=1) + 1),
        s * d / avg_lin, s * avg_lin / d.clamp(min=1)], dim=1)
    torch.testing.assert_close(out, expected)
    # (PyG wraps the scaler list when aggr is a string: pass a list)
    reference = pyg_aggr.DegreeScalerAggregation(["sum"], scalers, deg_hist)
    torch.testing.assert_close(out, reference(x, index, dim_size=4))
    with pytest.raises(ValueError, match="unknown scaler"):
        aggr.DegreeScalerAggregation("sum", ["cubic"], deg_hist)
    with pytest.raises(ValueError, match="histogram"):
        aggr.DegreeScalerAggregation("sum", ["linear"], torch.zeros(3))


def test_degree_histogram_from_dataset_and_loader():
    graphs = [Data(edge_index=random_graph(n, 3 * n, seed=n), num_nodes=n)
              for n in (5, 9, 14)]
    expected = torch.zeros(40, dtype=torch.long)
    for g in graphs:
        deg = torch.bincount(g.edge_index[1], minlength=g.num_nodes)
        expected += torch.bincount(deg, minlength=40)
    expected = expected[:int(expected.nonzero().max()) + 1]
    assert torch.equal(aggr.degree_histogram(graphs), expected)
    assert torch.equal(aggr.degree_histogram(DataLoader(graphs,
                                                        batch_size=2)),
                       expected)


@pytest.mark.parametrize("stats", [["mean", "min", "max", "std"],
                                   ["sum", "var"], ["var", "std"], ["min"],
                                   ["max"]])
def test_neighbour_and_shifted_stats_equal_gathered_messages(stats):
    edge_index = skewed_graph(11)
    csr = csr_view(edge_index, 11)
    q = torch.randn(11, 2, 3, dtype=torch.double, requires_grad=True)
    shift = torch.randn(11, 2, 3, dtype=torch.double)
    gathered = q[csr.col] + shift[csr.row]
    expected = segment_stats(gathered, csr.rowptr, stats)
    got = shift_stats(neighbor_stats(q, csr, stats), shift, csr.degree)
    for s in stats:
        torch.testing.assert_close(got[s], expected[s])
    assert torch.autograd.gradcheck(
        lambda t: torch.cat(list(neighbor_stats(t, csr, stats).values()),
                            -1), (q,))


@pytest.mark.parametrize("build", [
    *(lambda name=name: getattr(aggr, f"{name}Aggregation")()
      for name in NAMES),
    lambda: aggr.MultiAggregation(["mean", "max", "std"]),
    lambda: aggr.DegreeScalerAggregation(["mean", "sum", "max"],
                                         ["identity", "linear"],
                                         torch.tensor([0, 3, 0, 1, 1])),
    aggr.MulAggregation, lambda: aggr.LCMAggregation(6, 6),
    lambda: aggr.RecurrentAggregation(6, 6),
    lambda: aggr.TopMAttentionAggregation(6, m=2),
], ids=NAMES + ["Multi", "DegreeScaler", "Mul", "LCM", "Recurrent", "TopM"])
def test_torch_jit_script_runs_as_eager(build):
    # PyG's own tests script every aggregation; gnnagg's methods stay
    # Python (torch.jit.ignore) and its helper properties unscripted
    x, index = _messages()
    module = build().double().eval()
    torch.testing.assert_close(torch.jit.script(module)(x, index),
                               module(x, index))

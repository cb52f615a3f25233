import math

import pytest
import torch
from torch_geometric.nn import MessagePassing

from gnnagg.nn.aggr import LCMAggregation, RecurrentAggregation
from gnnagg.ops import csr_from_index, segment_tree_reduce


def skewed_index(seed=0):
    """Degrees 0 (nodes 1 and 5), 1, 2, 3, 7, 64: odd carries at most
    levels; messages in random order (unsorted index)."""
    degrees = [1, 0, 2, 3, 7, 0, 64]
    index = torch.repeat_interleave(torch.arange(len(degrees)),
                                    torch.tensor(degrees))
    gen = torch.Generator().manual_seed(seed)
    return index[torch.randperm(index.numel(), generator=gen)], len(degrees)


class CountingOperator(torch.nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op, self.calls, self.pairs = op, 0, 0

    def forward(self, a, b):
        self.calls += 1
        self.pairs += a.size(0)
        return self.op(a, b)


@pytest.mark.parametrize("name, op, reduce, identity", [
    ("sum", torch.add, "sum", 0.0),
    ("max", torch.maximum, "amax", -math.inf),
    ("logsumexp", torch.logaddexp, None, -math.inf),
])
def test_tree_equals_scatter_for_monoids(name, op, reduce, identity):
    index, num_nodes = skewed_index()
    x = torch.randn(index.numel(), 5, dtype=torch.double)
    csr = csr_from_index(index, num_nodes)
    out = segment_tree_reduce(x[csr.perm], csr.rowptr, op,
                              torch.full((5,), identity, dtype=torch.double))
    rows = index.view(-1, 1).expand(-1, 5)
    if reduce is None:  # logsumexp = log sum exp
        expected = torch.zeros(num_nodes, 5, dtype=torch.double).index_add(
            0, index, x.exp()).log()
    else:
        expected = torch.full((num_nodes, 5), identity, dtype=torch.double
                              ).scatter_reduce(0, rows, x, reduce,
                                               include_self=reduce == "amax")
    torch.testing.assert_close(out, expected)


def test_operator_call_and_pair_counts():
    index, num_nodes = skewed_index()
    csr = csr_from_index(index, num_nodes)
    counter = CountingOperator(torch.add)
    segment_tree_reduce(torch.randn(index.numel(), 3)[csr.perm], csr.rowptr,
                        counter, torch.zeros(3))
    nonempty = int((csr.degree > 0).sum())
    assert counter.pairs == index.numel() - nonempty  # d - 1 per node
    assert counter.calls == math.ceil(math.log2(64))  # one call per level


def test_empty_graph_gives_identity():
    identity = torch.tensor([1.0, -2.0])
    out = segment_tree_reduce(torch.zeros(0, 2), torch.zeros(4, dtype=torch.long),
                              torch.add, identity)
    assert torch.equal(out, identity.expand(3, 2))


def reference_tree(values, op):
    """The same balanced tree, one node at a time, in Python."""
    level = list(values)
    while len(level) > 1:
        nxt = [op(level[i].unsqueeze(0), level[i + 1].unsqueeze(0))[0]
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def test_gru_tree_matches_per_node_python_loop():
    index, num_nodes = skewed_index(seed=3)
    aggr = LCMAggregation(4, 6).double()
    torch.nn.init.normal_(aggr.identity)
    x = torch.randn(index.numel(), 4, dtype=torch.double, requires_grad=True)
    out = aggr(x, index, dim_size=num_nodes)
    projected = aggr.lin(x).relu()
    expected = torch.stack([
        reference_tree(projected[index == i], aggr.combine)
        if bool((index == i).any()) else aggr.identity
        for i in range(num_nodes)])
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    params = [x] + list(aggr.parameters())
    for a, b in zip(torch.autograd.grad(out, params, grad),
                    torch.autograd.grad(expected, params, grad)):
        torch.testing.assert_close(a, b)


def test_gradcheck_and_identity_gets_gradient():
    index, num_nodes = skewed_index()
    keep = index != 6  # drop the 64-degree node to keep gradcheck small
    index = index[keep]
    aggr = LCMAggregation(3, 3, operator="mlp").double()
    x = torch.randn(index.numel(), 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: aggr(t, index, dim_size=num_nodes), (x,))
    aggr(x, index, dim_size=num_nodes).sum().backward()
    assert aggr.identity.grad is not None
    assert aggr.identity.grad.abs().sum() > 0  # nodes 1, 5 and 6 are empty


def test_symmetrised_operators_are_commutative():
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    for operator in ("gru", "mlp"):
        op = LCMAggregation(4, 4, operator=operator).combine
        torch.testing.assert_close(op(a, b), op(b, a))


def test_custom_operator_module_and_use_as_aggr():
    class Mean(torch.nn.Module):  # not associative: still a balanced tree
        def forward(self, a, b):
            return (a + b) / 2

    class Plain(MessagePassing):
        def forward(self, x, edge_index):
            return self.propagate(edge_index, x=x)

    edge_index = torch.tensor([[0, 1, 2, 3, 1], [4, 4, 4, 4, 0]])
    x = torch.arange(5.0).view(-1, 1).repeat(1, 2)
    conv = Plain(aggr=LCMAggregation(2, 2, project=False, operator=Mean()))
    out = conv(x, edge_index)
    # node 4: ((0+1)/2 + (2+3)/2)/2 = 1.5; node 0: 1; others: identity 0
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 0, 0, 0, 1.5]))


def test_memory_is_linear_not_padded():
    # one hub of degree 4096 beside 4096 nodes of degree 1: a padded tree
    # needs 4097 x 4096 rows; the segment tree about 2 x 8192
    index = torch.cat([torch.zeros(4096, dtype=torch.long),
                       torch.arange(1, 4097)])
    counter = CountingOperator(torch.add)
    csr = csr_from_index(index, 4097)
    segment_tree_reduce(torch.randn(index.numel(), 2), csr.rowptr, counter,
                        torch.zeros(2))
    assert counter.pairs == 4095


def test_recurrent_baseline_reads_whole_neighbourhoods():
    index, num_nodes = skewed_index()
    aggr = RecurrentAggregation(3, 5).eval()
    x = torch.randn(index.numel(), 3)
    out = aggr(x, index, dim_size=num_nodes)
    csr = csr_from_index(index, num_nodes)
    for node in (0, 4, 6):
        seq = x[csr.perm][csr.rowptr[node]:csr.rowptr[node + 1]]
        _, h = aggr.rnn(seq.unsqueeze(1))
        torch.testing.assert_close(out[node], h[0, 0])
    assert torch.equal(out[1], torch.zeros(5))
    aggr.train()
    shuffled = aggr(x, index, dim_size=num_nodes)
    assert not torch.allclose(shuffled[6], out[6])  # a random order
    torch.testing.assert_close(shuffled[0], out[0])  # degree 1: no order


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_aggregation_values_and_gradients_match_torch_rnn(cell):
    index, num_nodes = skewed_index()
    aggr = RecurrentAggregation(3, 5, cell=cell).eval().double()
    x = torch.randn(index.numel(), 3, dtype=torch.double, requires_grad=True)
    out = aggr(x, index, dim_size=num_nodes)
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, [x] + list(aggr.parameters()), grad_out)
    csr = csr_from_index(index, num_nodes)
    expected = torch.zeros_like(out)
    for node in range(num_nodes):
        seq = x[csr.perm][csr.rowptr[node]:csr.rowptr[node + 1]]
        if seq.numel():
            _, hidden = aggr.rnn(seq.unsqueeze(1))
            last = hidden[0] if cell == "lstm" else hidden
            expected = expected.index_put((torch.tensor([node]),), last[0])
    want = torch.autograd.grad(expected, [x] + list(aggr.parameters()),
                               grad_out)
    torch.testing.assert_close(out, expected)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_recurrent_backward_is_linear_in_the_degree():
    # PyTorch's RNN backward zero-fills the whole input per step (quadratic
    # in the degree: minutes at 100,000 neighbours). Count the elements the
    # backward pass allocates: it must grow linearly with the degree.
    aggr = RecurrentAggregation(4, 4)

    def elements(degree):
        x = torch.randn(degree, 4, requires_grad=True)
        out = aggr(x, torch.zeros(degree, dtype=torch.long))
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU],
                     profile_memory=True) as prof:
            out.sum().backward()
        return sum(max(e.cpu_memory_usage, 0)
                   for e in prof.key_averages())

    small, large = elements(150), elements(1200)
    assert large < 8 * small * 1.5, (small, large)


def test_bad_arguments():
    with pytest.raises(ValueError, match="project"):
        LCMAggregation(3, 4, project=False)
    with pytest.raises(ValueError, match="unknown operator"):
        LCMAggregation(3, 4, operator="lstm")
    with pytest.raises(ValueError, match="expected messages"):
        LCMAggregation(3, 4)(torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    assert isinstance(LCMAggregation(3, 4).gru_cell, torch.nn.GRUCell)


def test_pyg_weights_load_and_the_tree_matches_pyg_without_padding():
    from torch_geometric.nn.aggr import LCMAggregation as PyGLCM
    theirs = PyGLCM(3, 4)
    ours = LCMAggregation(3, 4)
    assert set(ours.state_dict()) == set(theirs.state_dict()) | {"identity"}
    ours.load_state_dict(theirs.state_dict())
    assert torch.equal(ours.identity, torch.zeros(4))  # PyG's padding
    # every node of degree 4 (a power of two): PyG pads nothing, so both
    # trees pair the same messages and agree exactly
    index = torch.arange(5).repeat_interleave(4)
    x = torch.randn(20, 3)
    torch.testing.assert_close(ours(x, index), theirs(x, index))


def test_checkpointed_tree_gives_same_values_and_gradients():
    index, num_nodes = skewed_index(seed=5)
    plain = LCMAggregation(4, 4, checkpoint=False)
    saving = LCMAggregation(4, 4, checkpoint=True)
    saving.load_state_dict(plain.state_dict())
    saving.CHECKPOINT_PAIRS = 3  # several chunks per level
    x = torch.randn(index.numel(), 4, requires_grad=True)
    out, out_cp = plain(x, index, dim_size=num_nodes), saving(
        x, index, dim_size=num_nodes)
    torch.testing.assert_close(out_cp, out)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out_cp, [x] + list(saving.parameters()),
                                        grad),
                    torch.autograd.grad(out, [x] + list(plain.parameters()),
                                        grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_spelled_out_cells_equal_torchs(cell, monkeypatch):
    # what runs under torch.compile (CUDA's fused cells cannot be traced)
    from gnnagg.nn.aggr import lcm
    gates = 3 if cell == "gru" else 4
    x, h, c = (torch.randn(7, 4, dtype=torch.double) for _ in range(3))
    weights = [torch.randn(gates * 4, 4, dtype=torch.double),
               torch.randn(gates * 4, 4, dtype=torch.double),
               torch.randn(gates * 4, dtype=torch.double),
               torch.randn(gates * 4, dtype=torch.double)]
    if cell == "gru":
        expected = [torch.gru_cell(x, h, *weights)]
    else:
        expected = list(torch.lstm_cell(x, (h, c), *weights))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    got = [lcm._gru_step(x, h, *weights)] if cell == "gru" else \
        list(lcm._lstm_step(x, h, c, *weights))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_hooks_on_the_gru_cell_run_as_with_pyg():
    aggr = LCMAggregation(4, 4)
    calls = []
    aggr.gru_cell.register_forward_hook(lambda *args: calls.append(1))
    aggr(torch.randn(6, 4), torch.tensor([0, 0, 0, 1, 1, 2]))
    assert calls  # the tree called the module, not only its weights

"""gnnagg's custom operators: PyTorch's operator checks (schema, autograd
registration, fake implementation, AOT dispatch) on each, and the
device-generic implementations (what a GPU runs) forced on the CPU against
the CPU ones, operators and whole layers, values and gradients."""
import pytest
import torch
from torch_geometric.nn import SAGEConv

from gnnagg.nn import GATConv, GATv2Conv, PNAConv, TANGNNConv
from gnnagg.nn import aggr
from gnnagg.ops import build_csr, use_generic
import gnnagg.ops.dynamic_attention as dynamic_attention

from conftest import skewed_graph

OPS = torch.ops.gnnagg


def graph():
    csr = build_csr(skewed_graph(12), 12, 12)
    return csr


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.double, requires_grad=True)


def operator_calls():
    """(name, operator, args) for every operator, sorted and unsorted
    forms."""
    csr = graph()
    E, N = csr.num_edges, csr.num_dst
    rowptr_t, col_t, slot_t = csr.transpose
    calls = []
    message_order = torch.randperm(E)
    unsorted_row = csr.row[message_order]  # messages grouped by a permutation
    grouping = (csr.rowptr.int(), torch.argsort(unsorted_row,
                                                stable=True).int())
    for reduce in ("sum", "mean", "max", "min"):
        values = leaf(E, 3)
        calls.append((f"reduce-{reduce}-grouped", OPS.reduce,
                      (values, unsorted_row, *grouping, N, reduce)))
        calls.append((f"reduce-{reduce}-sorted", OPS.reduce,
                      (values, csr.row, csr.rowptr, None, N, reduce)))
        calls.append((f"reduce-{reduce}-scatter", OPS.reduce,
                      (values, csr.row, None, None, N, reduce)))
        calls.append((f"gather_reduce-{reduce}", OPS.gather_reduce,
                      (leaf(N, 3), csr.col, csr.row, csr.rowptr, rowptr_t,
                       col_t, slot_t, N, reduce)))
    for std in (False, True):
        spread = "std" if std else "var"
        for form, structure in (("sorted", (csr.row, csr.rowptr, None)),
                                ("grouped", (unsorted_row, *grouping)),
                                ("scatter", (csr.row, None, None))):
            calls.append((f"moments-{spread}-{form}", OPS.moments,
                          (leaf(E, 3), *structure, N, std)))
        for form, structure in (("sorted", (csr.rowptr, rowptr_t, col_t)),
                                ("sorted-chunks", (csr.rowptr, None, None)),
                                ("scatter", (None, None, None))):
            calls.append((f"gather_moments-{spread}-{form}",
                          OPS.gather_moments,
                          (leaf(N, 3), csr.col, csr.row, *structure, N,
                           std)))
    for reduce in ("max", "min"):  # without the transpose
        calls.append((f"gather_reduce-{reduce}-chunks", OPS.gather_reduce,
                      (leaf(N, 3), csr.col, csr.row, csr.rowptr, None, None,
                       None, N, reduce)))
    for form, structure in (("sorted", (csr.rowptr, rowptr_t, slot_t)),
                            ("sorted-chunks", (csr.rowptr, None, None)),
                            ("scatter", (None, None, None))):
        calls.append((f"gather_extremes-{form}", OPS.gather_extremes,
                      (leaf(N, 3), csr.col, csr.row, *structure, N)))
    calls.append(("softmax-sorted", OPS.softmax,
                  (leaf(E, 2), csr.row, csr.rowptr, N)))
    calls.append(("softmax-scatter", OPS.softmax,
                  (leaf(E, 2), csr.row, None, N)))
    blocks = csr.head_blocks(2) + csr.head_blocks(2, transpose=True)
    calls.append(("weighted_aggregate", OPS.weighted_aggregate,
                  (leaf(E, 2), leaf(N, 2, 3), csr.rowptr, csr.col, csr.row,
                   rowptr_t, col_t, slot_t, *(None,) * 6, N)))
    calls.append(("weighted_aggregate-head-blocks", OPS.weighted_aggregate,
                  (leaf(E, 2), leaf(N, 2, 3), csr.rowptr, csr.col, csr.row,
                   None, None, None, *blocks, N)))
    keep = OPS.segment_topm(torch.randn(E, 2), csr.rowptr, 2)
    slots, shuffled = torch.arange(E), torch.randperm(E)
    calls.append(("message_attention", OPS.message_attention,
                  (leaf(E, 3), leaf(2, 3), leaf(2), keep, csr.rowptr,
                   csr.row, slots)))
    calls.append(("message_attention-unsorted", OPS.message_attention,
                  (leaf(E, 3), leaf(2, 3), leaf(2), keep, csr.rowptr,
                   csr.row, shuffled)))
    calls.append(("message_attention-all-kept", OPS.message_attention,
                  (leaf(E, 3), leaf(1, 3), leaf(1), None, csr.rowptr,
                   csr.row, slots)))
    # recomputed in backward / kept, summed by index_add / sparse products
    for keep, transpose in ((False, (None, None)), (True, (None, None)),
                            (True, (rowptr_t, slot_t))):
        form = f"keep={keep}" + ("-products" if transpose[0] is not None
                                 else "")
        calls.append((f"gatv2_score-{form}", OPS.gatv2_score,
                      (leaf(N, 2, 3), leaf(N, 2, 3), leaf(2, 3), csr.col,
                       csr.row, csr.rowptr, *transpose, leaf(E, 4),
                       leaf(6, 4), 0.2, keep)))
        calls.append((f"gatv2_score-no-edges-{form}", OPS.gatv2_score,
                      (leaf(N, 2, 3), leaf(N, 2, 3), leaf(2, 3), csr.col,
                       csr.row, csr.rowptr, *transpose, None, None, 0.2,
                       keep)))
    for dst, name in ((leaf(N, 2), ""), (None, "-sources-only")):
        calls.append((f"endpoint_sum{name}", OPS.endpoint_sum,
                      (leaf(N, 2), dst, csr.col, csr.row, csr.rowptr,
                       rowptr_t, slot_t)))
    calls.append(("endpoint_sum-without-transpose", OPS.endpoint_sum,
                  (leaf(N, 2), leaf(N, 2), csr.col, csr.row, csr.rowptr,
                   None, None)))
    plain = dict(dtype=torch.double)  # backward operators: no double backward
    for activated, transpose in ((None, (None, None)),
                                 (torch.randn(E, 2, 3, **plain),
                                  (None, None)),
                                 (torch.randn(E, 2, 3, **plain),
                                  (rowptr_t, slot_t))):
        kind = ("recomputed" if activated is None else "kept") + \
            ("-products" if transpose[0] is not None else "")
        calls.append((f"gatv2_score-{kind}-backward",
                      OPS.gatv2_score_backward,
                      (torch.randn(E, 2, **plain),
                       torch.randn(N, 2, 3, **plain),
                       torch.randn(N, 2, 3, **plain),
                       torch.randn(2, 3, **plain), csr.col, csr.row,
                       csr.rowptr, *transpose,
                       torch.randn(E, 4, **plain), torch.randn(6, 4, **plain),
                       activated, 0.2)))
    for form, structure in (("", (rowptr_t, col_t, slot_t) + (None,) * 6),
                            ("-head-blocks", (None,) * 3 + blocks)):
        calls.append((f"weighted_aggregate{form}_backward",
                      OPS.weighted_aggregate_backward,
                      (torch.randn(N, 2, 3, **plain),
                       torch.randn(E, 2, **plain),
                       torch.randn(N, 2, 3, **plain), csr.rowptr, csr.col,
                       csr.row, *structure, True, True)))
    calls.append(("endpoint_sum_backward", OPS.endpoint_sum_backward,
                  (torch.randn(E, 2, **plain), csr.col, csr.row, csr.rowptr,
                   rowptr_t, slot_t, N, True, True)))
    probabilities = torch.rand(E, 2, **plain)
    calls.append(("message_attention_backward",
                  OPS.message_attention_backward,
                  (torch.randn(N, 2, 3, **plain), torch.randn(E, 3, **plain),
                   torch.randn(2, 3, **plain), torch.randn(2, **plain),
                   probabilities, torch.randn(E, 2, **plain),
                   torch.rand(E, 1, **plain) + 0.5, csr.rowptr, csr.row,
                   shuffled)))
    degrees, order, position, _ = csr.degree_groups
    calls.append(("permute_rows", OPS.permute_rows,
                  (leaf(N, 3), order, position)))
    calls.append(("group_products", OPS.group_products,
                  (leaf(N, 3), leaf(3, 2, 3), [2, 0, N - 2])))
    calls.append(("segment_topm", OPS.segment_topm,
                  (torch.randn(E, 2), csr.rowptr, 2)))
    exponent = (torch.rand(1, 3, dtype=torch.double) + 0.5).requires_grad_()
    calls.append(("clamped_power", OPS.clamped_power,
                  (leaf(E, 3), exponent, 0.1, 1.5)))
    return calls


CALLS = operator_calls()


@pytest.mark.parametrize("name, op, args", CALLS,
                         ids=[name for name, *_ in CALLS])
def test_opcheck(name, op, args):
    torch.library.opcheck(op, args)


def run_operator(op, args):
    out = op(*args)
    outputs = out if isinstance(out, (list, tuple)) else [out]
    leaves = [a for a in args if isinstance(a, torch.Tensor)
              and a.requires_grad]
    differentiable = [o for o in outputs if o.requires_grad]
    if not differentiable or not leaves:
        return outputs, []
    grads = torch.autograd.grad(
        differentiable, leaves, [torch.ones_like(o) for o in differentiable],
        allow_unused=True)
    return outputs, grads


@pytest.mark.parametrize("name, op, args", CALLS,
                         ids=[name for name, *_ in CALLS])
def test_generic_implementation_matches_cpu(name, op, args):
    cpu = run_operator(op, args)
    with use_generic():
        generic = run_operator(op, args)
    for a, b in zip(cpu[0] + list(cpu[1]), generic[0] + list(generic[1])):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b)


def test_gradcheck_and_gradgradcheck_of_every_differentiable_operator():
    """First and second derivatives (a backward pass that is itself
    recorded) of every operator's differentiable outputs, CPU and generic
    implementations."""
    for name, op, args in CALLS:
        if name.startswith("segment_topm") or name.endswith("backward"):
            continue
        inputs = [a for a in args if isinstance(a, torch.Tensor)
                  and a.requires_grad]

        def call(*leaves, args=args, op=op):
            it = iter(leaves)
            out = op(*[next(it) if isinstance(a, torch.Tensor) and
                       a.requires_grad else a for a in args])
            return tuple(o for o in out if o.requires_grad) \
                if isinstance(out, (list, tuple)) else out
        for generic in (False, True):
            with use_generic(generic):
                assert torch.autograd.gradcheck(call, inputs), name
                assert torch.autograd.gradgradcheck(call, inputs), name


DEG = torch.tensor([0, 3, 4, 3, 1, 1])
MODULES = {
    "GATConv": lambda: GATConv(5, 3, heads=2, edge_dim=2),
    "GATv2Conv": lambda: GATv2Conv(5, 3, heads=2, edge_dim=2),
    "PNAConv": lambda: PNAConv(5, 5, ["mean", "min", "max", "std"],
                               ["identity", "amplification"], DEG,
                               edge_dim=2),
    "PNAConv-no-edges": lambda: PNAConv(5, 5, ["mean", "max", "sum"],
                                        ["linear"], DEG),
    "TANGNNConv": lambda: TANGNNConv(5, 5, m=2),
    **{f"SAGEConv-{name}": (lambda name=name: SAGEConv(5, 5, aggr=name))
       for name in ("sum", "mean", "min", "max", "var", "std", "mul")},
    "SAGEConv-softmax": lambda: SAGEConv(
        5, 5, aggr=aggr.SoftmaxAggregation(learn=True)),
    "SAGEConv-powermean": lambda: SAGEConv(
        5, 5, aggr=aggr.PowerMeanAggregation(learn=True)),
    "SAGEConv-multi": lambda: SAGEConv(
        5, 5, aggr=aggr.MultiAggregation(["mean", "min", "max", "std"])),
    "SAGEConv-topm": lambda: SAGEConv(
        5, 5, aggr=aggr.TopMAttentionAggregation(5, m=2)),
    "SAGEConv-lcm": lambda: SAGEConv(5, 5, aggr=aggr.LCMAggregation(5, 5)),
}


def module_inputs(name, chunked=False):
    edge_index = skewed_graph(12)
    x = torch.randn(12, 5, dtype=torch.double)
    args = [x, edge_index]
    if name in ("GATConv", "GATv2Conv", "PNAConv"):
        args.append(torch.randn(edge_index.size(1), 2, dtype=torch.double))
    return args


def build_module(name):
    """``MODULES[name]`` in float64 and evaluation mode, the same weights
    on every call, gnnagg's aggregation inside the ``SAGEConv`` rows."""
    torch.manual_seed(0)
    module = MODULES[name]().double().eval()
    for aggregation in module.modules():
        if isinstance(aggregation, (aggr.SoftmaxAggregation,
                                    aggr.PowerMeanAggregation)):
            aggregation.reset_parameters()
    if name.startswith("SAGEConv-") and name.split("-")[1] in (
            "sum", "mean", "min", "max", "var", "std", "mul"):
        module.aggr_module = aggr.resolve_aggregation(name.split("-")[1])
    return module


def module_results(name, device="cpu", generic=False):
    """Output and gradients (inputs, then parameters) of ``MODULES[name]``
    in float64 on ``device``, with the same weights and inputs on every
    call; ``generic`` forces the device-generic implementations."""
    module = build_module(name)
    args = module_inputs(name)
    module = module.to(device)
    leaves = [a.to(device, copy=True).requires_grad_()
              if a.is_floating_point() else a.to(device) for a in args]
    with use_generic(generic):
        out = module(*leaves)
        grads = torch.autograd.grad(
            out.sum(), [a for a in leaves if a.requires_grad] +
            list(module.parameters()), allow_unused=True)
    return out, grads


@pytest.mark.parametrize("name", sorted(MODULES))
def test_training_after_evaluation_under_inference_mode(name):
    """Evaluation under ``torch.inference_mode``, then training on the same
    graph: what the graph caches keep (CSR views, their lazy parts, message
    groupings) is built outside inference mode, since an inference tensor
    cannot be saved for backward; outputs and gradients are a fresh
    graph's."""
    from gnnagg.ops import clear_csr_cache
    module = build_module(name)
    args = module_inputs(name)
    clear_csr_cache()
    with torch.inference_mode():
        for _ in range(3):
            torch.manual_seed(1)
            module(*args)
    results = []
    for _ in range(2):  # on the graph seen in inference mode, then fresh
        x = args[0].clone().requires_grad_()
        torch.manual_seed(1)
        out = module(x, *args[1:])
        results.append((out, torch.autograd.grad(out.sum(), x)[0]))
        clear_csr_cache()
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


def assert_same_results(got, want):
    """Outputs and gradients of ``module_results`` agree (compared on the
    CPU); a gradient is None on both sides or on neither."""
    torch.testing.assert_close(got[0].cpu(), want[0].cpu())
    for a, b in zip(got[1], want[1], strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a.cpu(), b.cpu())


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_on_generic_implementations_match_cpu(name, chunked,
                                                     monkeypatch):
    if chunked:  # GATv2's chunked operator path, as at scale
        monkeypatch.setattr(dynamic_attention, "CHUNK_ELEMENTS", 7)
    assert_same_results(module_results(name, generic=True),
                        module_results(name))


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_dispatch_free_gather_reduce_equals_the_operator(reduce):
    """Eager CPU calls of gather_reduce run past the dispatcher (an
    autograd.Function over the operator's own kernel and backward); values
    and gradients equal the operator's, ties included."""
    from gnnagg.ops import segment
    from gnnagg.ops.library import dispatch_free
    graph = skewed_graph(30, seed=1)
    csr = build_csr(graph, 30, 30)
    x = torch.randint(0, 3, (30, 5)).double().requires_grad_()  # ties
    args = (csr.col, csr.row, csr.rowptr, *csr.transpose, 30, reduce)
    assert dispatch_free(x)
    fast = segment._gather_reduce_call(x, *args)
    assert type(fast.grad_fn).__name__ == "_GatherReduceFunctionBackward"
    slow = OPS.gather_reduce(x, *args)
    assert "GatherReduceFunction" not in type(slow.grad_fn).__name__
    grad = torch.randn_like(fast)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(torch.autograd.grad(fast, x, grad)[0],
                               torch.autograd.grad(slow, x, grad)[0])


@pytest.mark.parametrize("chunk", [4, 1 << 15])  # chunked, one chunk
@pytest.mark.parametrize("used", [(0, 1), (0,), (1,)])
def test_dispatch_free_gather_extremes_equal_the_operator(chunk, used,
                                                          monkeypatch):
    """Eager CPU calls of gather_extremes take their backward past the
    dispatcher with the two gradients as they come; values and gradients
    equal the operator's (whose backward stacks them), ties included, with
    either extreme unused."""
    from gnnagg.ops import gather_extremes, segment
    monkeypatch.setattr(segment, "CHUNK_SLOTS", chunk)
    graph = skewed_graph(30, seed=1)
    csr = build_csr(graph, 30, 30)
    x = torch.randint(1, 4, (30, 5)).double().requires_grad_()  # ties
    fast = gather_extremes(x, csr.col, csr.row, 30, csr.rowptr,
                           csr.transpose)
    assert type(fast[0].grad_fn).__name__ == \
        "_GatherExtremesFunctionBackward"
    rowptr_t, _, slot_t = csr.transpose
    slow = OPS.gather_extremes(x, csr.col, csr.row, csr.rowptr, rowptr_t,
                               slot_t, 30)
    assert "GatherExtremesFunction" not in type(slow[0].grad_fn).__name__
    grads = [torch.randn_like(fast[0]) for _ in used]
    for got, want in zip(fast, slow):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(
        torch.autograd.grad([fast[k] for k in used], x, grads)[0],
        torch.autograd.grad([slow[k] for k in used], x, grads)[0])


def test_dispatch_free_only_on_plain_eager_cpu_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from gnnagg.ops.library import dispatch_free
    x = torch.randn(3, 2)
    assert dispatch_free(x)
    with use_generic():
        assert not dispatch_free(x)
    with FakeTensorMode() as mode:
        assert not dispatch_free(mode.from_tensor(x))
        assert not dispatch_free(torch.empty(3, 2))
    assert not dispatch_free(torch.empty(3, 2, device="meta"))


def test_dispatch_free_permute_rows_equals_the_operator():
    """Eager CPU permutations run past the dispatcher; values, gradients and
    the double backward (the inverse permutation again) equal the
    operator's."""
    from gnnagg.ops.permute import permute_rows
    order = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(7)
    x = torch.randn(7, 3, dtype=torch.double, requires_grad=True)
    fast = permute_rows(x, order, inverse)
    assert type(fast.grad_fn).__name__ == "_PermuteRowsFunctionBackward"
    slow = OPS.permute_rows(x, order, inverse)
    torch.testing.assert_close(fast, slow)
    grad = torch.randn_like(fast, requires_grad=True)
    (got,) = torch.autograd.grad(fast, x, grad, create_graph=True)
    torch.testing.assert_close(got, grad[inverse])
    torch.testing.assert_close(torch.autograd.grad(got.sum(), grad)[0],
                               torch.ones_like(grad))
    assert torch.autograd.gradgradcheck(
        lambda t: permute_rows(t, order, inverse), (x,))


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("bipartite", [False, True])
def test_head_blocks_equal_head_by_head(monkeypatch, heads, bipartite):
    """All heads multiplied as one block matrix (a graph's later uses) give
    the values and gradients of the head-by-head products (its first ones):
    duplicate edges, isolated nodes and a bipartite graph included, through
    the dispatcher and past it."""
    from gnnagg.ops import spmm
    num_src, num_dst = (12, 9) if bipartite else (12, 12)
    edge_index = skewed_graph(12, seed=2)
    edge_index = edge_index[:, edge_index[1] < num_dst]
    csr = build_csr(edge_index, num_src, num_dst)
    alpha = torch.rand(csr.num_edges, heads, dtype=torch.double,
                       requires_grad=True)
    x = torch.randn(num_src, heads, 4, dtype=torch.double,
                    requires_grad=True)
    grad = torch.randn(num_dst, heads, 4, dtype=torch.double)

    def run():
        out = spmm.weighted_aggregate(alpha, x, csr)
        return (out, *torch.autograd.grad(out, (alpha, x), grad))

    calls = []
    kernel = spmm._block_product
    monkeypatch.setattr(spmm, "_block_product",
                        lambda *a: calls.append(1) or kernel(*a))
    monkeypatch.setattr(spmm, "HEAD_BLOCKS_AFTER", 2)
    per_head = [run(), run()]  # head by head for the graph's first two
    assert len(calls) == 0
    blocks = run()
    assert len(calls) == 2  # forward and the gradient of x
    for heads_apart in per_head:
        for got, want in zip(blocks, heads_apart):
            torch.testing.assert_close(got, want)
    monkeypatch.undo()
    blocks_t = csr.head_blocks(heads, transpose=True)
    through_dispatcher = OPS.weighted_aggregate(
        alpha, x, csr.rowptr, csr.col, csr.row, None, None, None,
        *csr.head_blocks(heads), *blocks_t, num_dst)
    torch.testing.assert_close(through_dispatcher, blocks[0])
    torch.testing.assert_close(
        torch.autograd.grad(through_dispatcher, (alpha, x), grad), blocks[1:])


def test_dispatch_free_weighted_aggregate_only_without_autocast():
    """Eager CPU calls run past the dispatcher, but not under autocast,
    which the operator's registration handles (bfloat16 products)."""
    from gnnagg.ops import weighted_aggregate
    csr = graph()
    alpha = torch.rand(csr.num_edges, 2, requires_grad=True)
    x = torch.randn(csr.num_src, 2, 3, requires_grad=True)
    fast = weighted_aggregate(alpha, x, csr)
    assert type(fast.grad_fn).__name__ == \
        "_WeightedAggregateFunctionBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = weighted_aggregate(alpha, x, csr)
    assert "WeightedAggregateFunction" not in type(mixed.grad_fn).__name__
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), fast, atol=0.05, rtol=0.02)


def _dispatch_free_cases():
    """(name, public call, the same through the dispatcher, inputs that
    take gradients) for the operators that eager CPU calls run past it."""
    from gnnagg.ops import (endpoint_sum, gather_moments, gatv2_score,
                            message_moments, message_softmax,
                            reduce_messages)
    csr = graph()
    E, N = csr.num_edges, csr.num_dst
    logits = torch.randint(0, 3, (E, 2)).double().requires_grad_()  # ties
    x_src, x_dst, att = leaf(N, 2, 3), leaf(N, 2, 3), leaf(2, 3)
    cases = [("softmax", lambda: message_softmax(logits, csr.row, N,
                                                 csr.rowptr),
              lambda: OPS.softmax(logits, csr.row, csr.rowptr, N),
              (logits,))]
    for reduce in ("sum", "max"):
        cases.append((
            f"reduce-{reduce}",
            lambda r=reduce: reduce_messages(logits, csr.row, N, r,
                                             csr.rowptr),
            lambda r=reduce: OPS.reduce(logits, csr.row, csr.rowptr, None,
                                        N, r),
            (logits,)))
    for std in (False, True):
        for form, rowptr in (("sorted", csr.rowptr), ("scatter", None)):
            cases.append((
                f"moments-{form}-std={std}",
                lambda r=rowptr, s=std: message_moments(
                    logits, csr.row, N, r, s)[1],
                lambda r=rowptr, s=std: OPS.moments(logits, csr.row, r, None,
                                                    N, s)[1],
                (logits,)))
        for moment in (0, 1):
            cases.append((
                f"gather_moments-{moment}-std={std}",
                lambda m=moment, s=std: gather_moments(
                    x_src, csr.col, csr.row, N, csr.rowptr, csr.transpose,
                    s)[m],
                lambda m=moment, s=std: OPS.gather_moments(
                    x_src, csr.col, csr.row, csr.rowptr, *csr.transpose[:2],
                    N, s)[m],
                (x_src,)))
    cases.append(("endpoint_sum", lambda: endpoint_sum(x_src, x_dst, csr),
                  lambda: OPS.endpoint_sum(x_src, x_dst, csr.col, csr.row,
                                           csr.rowptr, *csr.transpose[::2]),
                  (x_src, x_dst)))
    cases.append(("gatv2_score", lambda: gatv2_score(x_src, x_dst, att, csr),
                  lambda: OPS.gatv2_score(x_src, x_dst, att, csr.col, csr.row,
                                          csr.rowptr, csr.transpose[0],
                                          csr.transpose[2], None, None, 0.2,
                                          True)[0],
                  (x_src, x_dst, att)))
    # the Function itself where backward recomputes (large graphs)
    cases.append(("gatv2_score-recomputed",
                  lambda: dynamic_attention._Gatv2ScoreFunction.apply(
                      x_src, x_dst, att, csr.col, csr.row, csr.rowptr, None,
                      None, None, None, 0.2, False)[0],
                  lambda: OPS.gatv2_score(x_src, x_dst, att, csr.col, csr.row,
                                          csr.rowptr, None, None, None, None,
                                          0.2, False)[0],
                  (x_src, x_dst, att)))
    return cases


DISPATCH_FREE = _dispatch_free_cases()


@pytest.mark.parametrize("name, fast, slow, inputs", DISPATCH_FREE,
                         ids=[case[0] for case in DISPATCH_FREE])
def test_dispatch_free_calls_equal_the_operators(name, fast, slow, inputs):
    """Eager CPU calls of softmax, reduce, moments and gatv2_score run past the
    dispatcher; values and gradients equal the operators'."""
    got, want = fast(), slow()
    assert "FunctionBackward" in type(got.grad_fn).__name__
    assert "FunctionBackward" not in type(want.grad_fn).__name__
    torch.testing.assert_close(got, want)
    grad = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, inputs, grad),
                    torch.autograd.grad(want, inputs, grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_gradgradcheck_of_every_layer(name):
    """Double backward through every layer and aggregation (the node
    features' second derivatives), as PyG's plain autograd allows."""
    torch.manual_seed(0)
    module = MODULES[name]().double()
    args = module_inputs(name)
    x = args[0].requires_grad_()
    assert torch.autograd.gradgradcheck(lambda v: module(v, *args[1:]), (x,))

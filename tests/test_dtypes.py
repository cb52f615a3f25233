"""Half precision, bfloat16, float64 and torch.autocast on every layer and
aggregation, against PyG's namesake with the same weights."""
import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.nn import SAGEConv
from torch_geometric.nn import aggr as pyg_aggr

from gnnagg.nn import GATConv, GATv2Conv, PNAConv
from gnnagg.nn import aggr

DEG = torch.tensor([0, 3, 4, 3, 1, 1])
PNA_ARGS = (["mean", "min", "max", "std"], ["identity", "amplification"],
            DEG)
PAIRS = {
    "GATConv": (lambda: GATConv(5, 3, heads=2, edge_dim=2),
                lambda: pyg_nn.GATConv(5, 3, heads=2, edge_dim=2)),
    "GATv2Conv": (lambda: GATv2Conv(5, 3, heads=2, edge_dim=2),
                  lambda: pyg_nn.GATv2Conv(5, 3, heads=2, edge_dim=2)),
    "PNAConv": (lambda: PNAConv(5, 5, *PNA_ARGS, edge_dim=2),
                lambda: pyg_nn.PNAConv(5, 5, *PNA_ARGS, edge_dim=2)),
    **{f"aggr={name}": (
        lambda name=name: SAGEConv(5, 5, aggr=aggr.resolve_aggregation(name)),
        lambda name=name: SAGEConv(5, 5, aggr=name))
       for name in ("sum", "mean", "min", "max", "var", "std", "softmax",
                    "powermean", "mul")},
    "aggr=multi": (
        lambda: SAGEConv(5, 5, aggr=aggr.MultiAggregation(
            ["mean", "min", "max", "std"])),
        lambda: SAGEConv(5, 5, aggr=pyg_aggr.MultiAggregation(
            ["mean", "min", "max", "std"]))),
}
TOLERANCE = {torch.float16: dict(atol=5e-3, rtol=5e-3),
             torch.bfloat16: dict(atol=4e-2, rtol=4e-2),
             torch.float64: dict(atol=1e-12, rtol=1e-10),
             torch.float32: dict(atol=1e-5, rtol=1e-4)}


def inputs(name):
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 12, (2, 40), generator=gen)
    args = [torch.rand(12, 5, generator=gen) + 0.5, edge_index]
    if name in ("GATConv", "GATv2Conv", "PNAConv"):
        args.append(torch.randn(40, 2, generator=gen))
    return args


def paired(name):
    build_ours, build_reference = PAIRS[name]
    torch.manual_seed(0)
    reference = build_reference()
    ours = build_ours()
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def forward_backward(module, args, dtype):
    leaves = [a.to(dtype).requires_grad_() if a.is_floating_point() else a
              for a in args]
    out = module(*leaves)
    grads = torch.autograd.grad(out.float().sum(), [a for a in leaves
                                                    if a.requires_grad])
    return out, grads


def assert_dtype_matches_pyg(name, dtype, device="cpu"):
    """gnnagg's module and PyG's, cast to ``dtype`` on ``device``: outputs
    of that dtype within its tolerance, finite gradients within four
    times it."""
    ours, reference = paired(name)
    args = [a.to(device) for a in inputs(name)]
    out, grads = forward_backward(ours.to(device, dtype), args, dtype)
    expected, expected_grads = forward_backward(reference.to(device, dtype),
                                                args, dtype)
    assert out.dtype == expected.dtype == dtype
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), expected.double(), **tolerance)
    for got, want in zip(grads, expected_grads, strict=True):
        assert got.dtype == dtype and bool(torch.isfinite(got).all())
        torch.testing.assert_close(got.double(), want.double(), **{
            k: 4 * v for k, v in tolerance.items()})


def assert_autocast_matches_pyg(name, device, dtype):
    """Both float32 modules under ``torch.autocast(device, dtype)``: the
    same output dtype as PyG's, values within ``dtype``'s tolerance."""
    ours, reference = paired(name)
    args = [a.to(device) for a in inputs(name)]
    ours, reference = ours.to(device), reference.to(device)
    with torch.autocast(device, dtype=dtype):
        out, grads = forward_backward(ours, args, torch.float32)
        expected, expected_grads = forward_backward(reference, args,
                                                    torch.float32)
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out.double(), expected.double(),
                               **TOLERANCE[dtype])
    for got, want in zip(grads, expected_grads, strict=True):
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got.double(), want.double(), atol=0.1,
                                   rtol=0.1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16,
                                   torch.float64],
                         ids=["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_dtype_matches_pyg(name, dtype):
    assert_dtype_matches_pyg(name, dtype)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_cpu_autocast_bfloat16_matches_pyg(name):
    assert_autocast_matches_pyg(name, "cpu", torch.bfloat16)


def test_integer_messages_aggregate_as_pyg():
    x = torch.randint(0, 5, (6, 3))
    index = torch.tensor([0, 0, 1, 1, 2, 2])
    for name in ("sum", "mean", "max", "std", "softmax", "powermean"):
        ours = aggr.resolve_aggregation(name)(x, index)
        expected = pyg_aggr.__dict__[type(aggr.resolve_aggregation(
            name)).__name__]()(x, index)
        assert ours.dtype == expected.dtype
        torch.testing.assert_close(ours, expected)


def output_and_gradient_as_pyg(name, x, index, dim_size):
    """``(out, d sum(out) / d x)`` of gnnagg's and of PyG's aggregation
    ``name`` (e.g. ``"VarAggregation"``) on the messages ``x``."""
    results = []
    for module in (getattr(aggr, name)(), getattr(pyg_aggr, name)()):
        leaf = x.clone().requires_grad_()
        out = module(leaf, index, dim_size=dim_size)
        results.append((out, torch.autograd.grad(out.float().sum(),
                                                 leaf)[0]))
    return results


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_variance_rounds_as_pyg(dtype):
    """The moments operator rounds as PyG's autograd of ``mean(x * x) -
    mean(x) ** 2``: the variance and its gradient in half precision are
    PyG's to the bit (wherever the variance is not below 0, which gnnagg
    floors), though the gradient is ill-conditioned there."""
    x = inputs("aggr=var")[0].to(dtype)
    index = torch.randint(0, 6, (12,), generator=torch.Generator()
                          .manual_seed(1))
    (ours, grad), (expected, expected_grad) = output_and_gradient_as_pyg(
        "VarAggregation", x, index, 6)
    assert (expected >= 0).all()  # no floor at work: bit-for-bit expected
    assert torch.equal(ours, expected)
    assert torch.equal(grad, expected_grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_std_gradient_is_zero_where_pyg_clamps_the_variance(dtype):
    """Segments whose variance lies below the std's epsilon (nearly equal
    messages) get PyG's zero gradient, though in half precision the
    clamped std rounds above the floor that masks it; other segments
    get PyG's gradient."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 3, generator=gen).repeat_interleave(3, 0)
    x = (base + 1e-4 * torch.randn(12, 3, generator=gen)).to(dtype)
    x[:3] = torch.randn(3, 3, generator=gen).to(dtype)  # a wide segment
    index = torch.arange(4).repeat_interleave(3)
    (ours, grad), (expected, expected_grad) = output_and_gradient_as_pyg(
        "StdAggregation", x, index, 4)
    assert torch.equal(ours, expected)
    assert not expected_grad[3:].any() and expected_grad[:3].abs().sum() > 0
    torch.testing.assert_close(grad, expected_grad, **TOLERANCE[dtype])

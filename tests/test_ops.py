import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch_geometric.utils import softmax as pyg_softmax

from gnnagg.nn.conv.loop_features import self_loop_edge_features
from gnnagg.ops import (build_csr, clamped_power, csr_view,
                        degree_scaled_linear, gatv2_score, message_moments,
                        neighbor_stats,
                        permute_rows, segment_reduce, segment_softmax,
                        set_backend, weighted_aggregate)
import gnnagg.ops.backend as backend
from gnnagg.ops.backend import get_backend, has_torch_scatter, uses_torch_scatter

from conftest import random_graph, skewed_graph


def test_csr_view_groups_edges_by_destination():
    edge_index = skewed_graph(12)
    csr = csr_view(edge_index, 12)
    assert torch.equal(csr.rowptr[-1], torch.tensor(edge_index.size(1)))
    assert torch.equal(csr.degree, torch.bincount(edge_index[1], minlength=12))
    assert torch.equal(csr.row, edge_index[1][csr.perm])
    assert torch.equal(csr.col, edge_index[0][csr.perm])
    assert bool((csr.row.diff() >= 0).all())
    assert torch.equal(csr.edge_index(), edge_index)
    values = torch.randn(edge_index.size(1), 3)
    assert torch.equal(csr.to_edge_order(csr.to_csr_order(values)), values)



def test_csr_of_edges_sorted_by_destination_skips_the_sort(monkeypatch):
    """Edges already grouped by destination (ties in any source order)
    give the view a sort would, without sorting; its columns are its own,
    not the caller's row."""
    edge_index = skewed_graph(12)
    order = torch.argsort(edge_index[1], stable=True)
    grouped = edge_index[:, order].clone()
    expected = build_csr(edge_index, 12, 12)  # unsorted: sorted here

    def no_sort(*args, **kwargs):
        raise AssertionError("sorted edges were sorted again")
    monkeypatch.setattr(torch, "argsort", no_sort)
    csr = build_csr(grouped, 12, 12)
    assert torch.equal(csr.perm, torch.arange(grouped.size(1)))
    for name in ("rowptr", "col", "row"):
        assert torch.equal(getattr(csr, name), getattr(expected, name))
    grouped[0, 0] += 1
    assert torch.equal(csr.col, expected.col)
    monkeypatch.undo()
    # one edge out of order: sorted as before
    unsorted = grouped.flip(1)
    assert torch.equal(build_csr(unsorted, 12, 12).row,
                       torch.sort(unsorted[1]).values)

def test_csr_transpose_groups_by_source():
    edge_index = skewed_graph(12)
    csr = csr_view(edge_index, 12)
    rowptr_t, col_t, slot_t = csr.transpose
    assert torch.equal(rowptr_t.diff(), torch.bincount(edge_index[0],
                                                       minlength=12))
    assert torch.equal(csr.col[slot_t], torch.sort(edge_index[0]).values)
    assert torch.equal(col_t, csr.row[slot_t])


def test_csr_view_is_cached_and_rebuilt_after_inplace_change():
    edge_index = random_graph(10, 30)
    first = csr_view(edge_index, 10)
    assert csr_view(edge_index, 10) is first
    assert csr_view(edge_index, 10, self_loops=True) is not first
    edge_index[0, 0] = (edge_index[0, 0] + 1) % 10
    rebuilt = csr_view(edge_index, 10)
    assert rebuilt is not first
    assert torch.equal(rebuilt.edge_index(), edge_index)


@pytest.mark.parametrize("edit", ["data", "numpy"])
def test_csr_view_cache_sees_edits_that_bump_no_version(edit):
    # .data and .numpy() writes leave tensor._version unchanged
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    first = csr_view(edge_index, 3)
    version = edge_index._version
    if edit == "data":
        edge_index.data[1, 0] = 0
    else:
        edge_index.numpy()[1, 0] = 0
    assert edge_index._version == version
    rebuilt = csr_view(edge_index, 3)
    assert rebuilt is not first
    assert torch.equal(rebuilt.edge_index(), edge_index)
    assert rebuilt.degree.tolist() == [2, 0, 1]
    # two views of the same edges (with and without loops) both stay cached
    loops = csr_view(edge_index, 3, self_loops=True)
    assert csr_view(edge_index, 3) is rebuilt
    assert csr_view(edge_index, 3, self_loops=True) is loops


def test_csr_cache_sets_nothing_on_the_tensor_and_goes_with_it():
    import gc
    import weakref
    from gnnagg.ops import cached_views, clear_csr_cache
    from gnnagg.ops.csr import _VIEWS
    gc.collect()
    entries = len(_VIEWS)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    view = csr_view(edge_index, 3)
    assert vars(edge_index) == {} and len(_VIEWS) == entries + 1
    assert cached_views(edge_index) == {(3, 3, False): view}
    alive = weakref.ref(view)
    del edge_index, view
    gc.collect()
    assert alive() is None and len(_VIEWS) == entries
    edge_index = torch.tensor([[0, 1], [1, 0]])
    csr_view(edge_index, 2)
    clear_csr_cache()
    assert cached_views(edge_index) == {}


def test_message_grouping_is_cached_per_view_and_rebuilt_after_an_edit():
    """An index's CSR grouping is built on its first call and shared by
    every view of the same place in the same tensor; an edit (even one
    that leaves the version counter alone), another view or another size
    gets its own; a tensor sliced into many indices keeps its latest
    views; the entry goes with its tensor."""
    import gc
    from gnnagg.ops import clear_csr_cache
    from gnnagg.ops.csr import (_GROUPINGS, MAX_GROUPED_VIEWS,
                                message_grouping)
    edge_index = random_graph(10, 40)
    rowptr, perm = message_grouping(edge_index[1], 10)
    assert rowptr.dtype == perm.dtype == torch.int32
    assert torch.equal(rowptr.long(), torch.cat([torch.zeros(1, dtype=torch.long),
        torch.bincount(edge_index[1], minlength=10).cumsum(0)]))
    assert torch.equal(perm.long(), torch.argsort(edge_index[1], stable=True))
    assert message_grouping(edge_index[1], 10)[1] is perm  # a new view object
    assert message_grouping(edge_index[0], 10)[1] is not perm  # another view
    assert message_grouping(edge_index[1], 11)[1] is not perm  # another size
    edge_index.numpy()[1, 0] = (edge_index[1, 0] + 1) % 10  # no version bump
    rebuilt = message_grouping(edge_index[1], 10)[1]
    assert rebuilt is not perm
    assert torch.equal(rebuilt.long(),
                       torch.argsort(edge_index[1], stable=True))
    clear_csr_cache()
    assert message_grouping(edge_index[1], 10)[1] is not rebuilt
    flat = edge_index.view(-1)
    groupings = [message_grouping(flat[start:start + 4], 10)
                 for start in range(0, 80, 4)]
    assert len(_GROUPINGS[edge_index]) == MAX_GROUPED_VIEWS
    assert message_grouping(flat[76:80], 10)[1] is groupings[-1][1]
    assert message_grouping(flat[0:4], 10)[1] is not groupings[0][1]
    gc.collect()
    entries = len(_GROUPINGS)
    del edge_index, flat
    gc.collect()
    assert len(_GROUPINGS) == entries - 1


def test_selection_and_one_hot_matrices_select_what_they_say():
    """Segment sums, sums by source, the adjacency and the one-hot gather
    as products with int32 CSR matrices (what MKL takes without a copy)."""
    from gnnagg.ops.csr import one_hot_matrix, selection_matrix
    edge_index = random_graph(10, 40)
    csr = csr_view(edge_index, 10)
    x = torch.randn(40, 3, dtype=torch.float64)
    rowptr_t, _, slot_t = csr.transpose
    segments = selection_matrix(csr.rowptr, None, 40, x)
    assert segments.crow_indices().dtype == torch.int32
    assert segments.values().dtype == torch.float64
    assert torch.equal(segments @ x, torch.zeros_like(x[:10]).index_add_(
        0, csr.row, x))
    by_source = selection_matrix(rowptr_t, slot_t, 40, x)
    assert torch.equal(by_source @ x, torch.zeros_like(x[:10]).index_add_(
        0, csr.col, x))
    adjacency = selection_matrix(csr.rowptr, csr.col, 10, x)
    assert torch.equal(adjacency.to_dense(), torch.zeros(
        10, 10, dtype=torch.float64).index_put_(
        (csr.row, csr.col), torch.ones(40, dtype=torch.float64),
        accumulate=True))
    gather = one_hot_matrix(csr.row, 10, x)
    assert gather.col_indices().dtype == torch.int32
    nodes = torch.randn(10, 3, dtype=torch.float64)
    assert torch.equal(gather @ nodes, nodes[csr.row])


def test_csr_from_index_sorts_an_index_once():
    """The aggregations that group messages (trees, recurrent cells, top-m)
    get an index's CSR view from the cache on later calls; an edit, a
    different tensor or a bad entry gets no cached view."""
    from gnnagg.ops import csr_from_index
    index = torch.tensor([2, 0, 1, 2, 0])
    first = csr_from_index(index, 3)
    assert csr_from_index(index, 3) is first
    assert csr_from_index(index.clone(), 3) is not first
    assert csr_from_index(index, 4) is not first
    index[0] = 1
    rebuilt = csr_from_index(index, 3)
    assert rebuilt is not first
    assert torch.equal(rebuilt.perm, torch.argsort(index, stable=True))
    assert rebuilt.rowptr.tolist() == [0, 2, 4, 5]
    past_range = torch.tensor([0, 5])
    for _ in range(2):
        with pytest.raises(IndexError):
            csr_from_index(past_range, 3)


@pytest.mark.parametrize("grouping_first", [True, False])
def test_grouping_and_csr_view_of_an_index_share_one_sort(monkeypatch,
                                                          grouping_first):
    """An index both reduced by its grouping and grouped into a CSR view
    (a multi-aggregation with a tree) is sorted once, whichever comes
    first; both describe the same grouping."""
    from gnnagg.ops import csr_from_index
    from gnnagg.ops.csr import message_grouping
    sorts = []
    argsort = torch.argsort
    monkeypatch.setattr(torch, "argsort",
                        lambda *a, **k: sorts.append(1) or argsort(*a, **k))
    index = torch.tensor([2, 0, 1, 2, 0, 2])
    if grouping_first:
        rowptr, perm = message_grouping(index, 4)
        csr = csr_from_index(index, 4)
    else:
        csr = csr_from_index(index, 4)
        rowptr, perm = message_grouping(index, 4)
    assert len(sorts) == 1
    assert torch.equal(csr.perm, perm.long()) and csr.perm is csr.col
    assert torch.equal(csr.rowptr, rowptr.long())
    assert csr.rowptr.tolist() == [0, 2, 3, 6, 6]


def test_reductions_of_a_grouped_index_equal_the_scatter():
    """Sums, means, extremes and moments of unsorted messages run on their
    index's grouping: values and gradients equal the scatter's (duplicates
    and ties included), float64 gradcheck."""
    from torch_geometric.utils import scatter
    from gnnagg.ops import reduce_messages
    from gnnagg.ops.csr import message_grouping
    from gnnagg.ops.segment import floored_std
    gen = torch.Generator().manual_seed(3)
    index = torch.randint(0, 9, (60,), generator=gen)
    index[index == 4] = 5  # an empty destination
    x = torch.randint(-2, 3, (60, 4), generator=gen).double()  # ties
    assert message_grouping(index, 9) is not None
    for reduce in ("sum", "mean", "max", "min"):
        leaf = x.clone().requires_grad_()
        out = reduce_messages(leaf, index, 9, reduce)
        torch.testing.assert_close(out, scatter(x, index, 0, 9, reduce))
        grad = torch.randn_like(out)
        got, = torch.autograd.grad(out, leaf, grad)
        if reduce in ("sum", "mean"):
            want, = torch.autograd.grad(
                scatter(leaf, index, 0, 9, reduce), leaf, grad)
            torch.testing.assert_close(got, want)
        else:  # shares split evenly between ties, summing to the gradient
            torch.testing.assert_close(
                scatter(got, index, 0, 9, "sum"),
                grad * (torch.bincount(index, minlength=9) > 0).unsqueeze(1))
        smooth = torch.randn(60, 4, dtype=torch.double, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda v, r=reduce: reduce_messages(v, index, 9, r), (smooth,))
    for std in (False, True):
        smooth = torch.randn(60, 4, dtype=torch.double, requires_grad=True)
        mean, spread = message_moments(smooth, index, 9, std=std)
        square_mean = scatter(smooth * smooth, index, 0, 9, "mean")
        variance = square_mean - scatter(smooth, index, 0, 9, "mean") ** 2
        torch.testing.assert_close(mean, scatter(smooth, index, 0, 9, "mean"))
        torch.testing.assert_close(
            spread, floored_std(variance) if std else variance)
        assert torch.autograd.gradcheck(
            lambda v, s=std: message_moments(v, index, 9, std=s)[1],
            (smooth,))


def test_self_loop_view_matches_pyg_order():
    from torch_geometric.utils import add_self_loops, remove_self_loops
    edge_index = torch.tensor([[0, 1, 1, 2, 2], [1, 1, 0, 2, 0]])
    expected, _ = add_self_loops(remove_self_loops(edge_index)[0],
                                 num_nodes=4)
    assert torch.equal(build_csr(edge_index, 4, 4, True).edge_index(),
                       expected)


@pytest.mark.parametrize("fill", ["mean", "add", "min", "max", "mul", 2.5])
def test_loop_features_match_pyg(fill):
    from torch_geometric.utils import add_self_loops, remove_self_loops
    edge_index = skewed_graph(9)
    edge_attr = torch.randn(edge_index.size(1), 3)
    ei, ea = remove_self_loops(edge_index, edge_attr)
    _, expected = add_self_loops(ei, ea, fill_value=fill, num_nodes=9)
    csr = build_csr(edge_index, 9, 9, True)
    torch.testing.assert_close(self_loop_edge_features(csr, edge_attr, fill),
                               expected)


@pytest.mark.parametrize("bad, message", [
    (torch.tensor([[0, 5], [1, 2]]), "source node 5"),
    (torch.tensor([[0, 1], [1, 9]]), "destination node 9"),
    (torch.tensor([[0, -1], [1, 2]]), "negative"),
    (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), "integers"),
    (torch.tensor([0, 1, 2]), "shape"),
    (torch.zeros(3, 2, dtype=torch.long), "shape"),
])
def test_bad_edge_index_is_a_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        csr_view(bad, 5)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_segment_reduce_matches_scatter_and_zero_fills(reduce):
    edge_index = skewed_graph(10)
    csr = csr_view(edge_index, 10)
    src = torch.randn(csr.num_edges, 4)
    expected = torch.zeros(10, 4).scatter_reduce(
        0, csr.row.view(-1, 1).expand(-1, 4), src,
        {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}[reduce],
        include_self=False)
    torch.testing.assert_close(segment_reduce(src, csr.rowptr, reduce),
                               expected)


def test_backend_switch_validates_names(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend"):
        set_backend("cupy")
    if not has_torch_scatter():
        with pytest.raises(ValueError, match="torch-scatter"):
            set_backend("torch_scatter")
    set_backend("torch")
    assert get_backend() == "torch"
    assert not uses_torch_scatter("mean", torch.device("cpu"))
    set_backend("auto")
    # auto takes torch-scatter only where measured faster (nowhere on the
    # CPU now), and only if installed
    assert not uses_torch_scatter("mean", torch.device("cpu"))
    monkeypatch.setattr(backend, "TORCH_SCATTER_FASTER",
                        frozenset({("mean", "cpu")}))
    assert uses_torch_scatter("mean", torch.device("cpu")) == has_torch_scatter()
    assert not uses_torch_scatter("max", torch.device("cpu"))


@pytest.mark.skipif(not has_torch_scatter(), reason="torch-scatter optional")
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_torch_scatter_backend_agrees(reduce):
    csr = csr_view(skewed_graph(10), 10)
    src = torch.randn(csr.num_edges, 4)
    native = segment_reduce(src, csr.rowptr, reduce)
    set_backend("torch_scatter")
    try:
        torch.testing.assert_close(segment_reduce(src, csr.rowptr, reduce),
                                   native)
    finally:
        set_backend("auto")


def test_segment_softmax_matches_pyg_and_is_stable():
    edge_index = skewed_graph(15)
    csr = csr_view(edge_index, 15)
    logits = torch.randn(csr.num_edges, 3) * 1e4  # huge logits
    out = segment_softmax(logits, csr.rowptr, csr.row)
    assert torch.isfinite(out).all()
    expected = pyg_softmax(logits.double(), csr.row, num_nodes=15).float()
    torch.testing.assert_close(out, expected)
    sums = torch.zeros(15, 3).index_add_(0, csr.row, out)
    has_edges = csr.degree > 0
    torch.testing.assert_close(sums[has_edges], torch.ones(int(has_edges.sum()), 3))


def test_gradcheck_segment_softmax():
    csr = csr_view(skewed_graph(8), 8)
    logits = torch.randn(csr.num_edges, 2, dtype=torch.double,
                         requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: segment_softmax(t, csr.rowptr, csr.row),
                                    (logits,))


def test_degree_groups_and_permute_rows():
    csr = csr_view(skewed_graph(12), 12)
    degrees, order, position, sizes = csr.degree_groups
    assert degrees.tolist() == sorted(set(csr.degree.tolist()))
    grouped = csr.degree[order]
    assert grouped.tolist() == sorted(csr.degree.tolist())
    assert sizes == [int((csr.degree == d).sum()) for d in degrees]
    assert torch.equal(order[position], torch.arange(12))
    x = torch.randn(12, 3, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(permute_rows(x, order, position), x[order])
    assert torch.autograd.gradcheck(
        lambda t: permute_rows(t, order, position), (x,))
    assert torch.autograd.gradgradcheck(
        lambda t: permute_rows(t, order, position), (x,))


def test_csr_by_degree_holds_the_same_edges_in_degree_order():
    edge_index = skewed_graph(12)
    csr = csr_view(edge_index, 12)
    _, order, _, _ = csr.degree_groups
    graph = csr.by_degree
    assert torch.equal(graph.degree, csr.degree[order])
    assert torch.equal(graph.rowptr[1:], torch.cumsum(graph.degree, 0))
    assert torch.equal(graph.row, torch.repeat_interleave(graph.degree))
    # destination r of the view is node order[r]: same sources, same order
    for r, node in enumerate(order.tolist()):
        start, end = csr.rowptr[node], csr.rowptr[node + 1]
        assert torch.equal(graph.col[graph.rowptr[r]:graph.rowptr[r + 1]],
                           csr.col[start:end])
    # slot k of the view is the caller's edge perm[k]
    assert torch.equal(edge_index[0][graph.perm], graph.col)
    assert torch.equal(order[graph.row], edge_index[1][graph.perm])
    x = torch.randn(12, 3)
    for name, value in neighbor_stats(x, graph, ["mean", "max"]).items():
        torch.testing.assert_close(
            value, neighbor_stats(x, csr, [name])[name][order])


def test_degree_groups_only_where_each_group_saves_enough():
    from gnnagg.ops.degree_linear import GROUP_SAVING, groups_by_degree
    csr = csr_view(skewed_graph(12), 12)
    num_groups = len(csr.degree_groups[3])
    # (S - 1) N O K multiply-adds saved: S = 2, N = 12, K = 1
    enough = -(-num_groups * GROUP_SAVING // 12)  # O that just covers it
    assert groups_by_degree(csr, (2, enough, 1))
    assert not groups_by_degree(csr, (2, enough - 1, 1))
    assert not groups_by_degree(csr, (1, 10 ** 9, 1))  # one scaler
    assert not groups_by_degree(csr, (2, enough, 1),
                                max_groups=num_groups - 1)
    # the G matrices W_d (G O K) no larger than the per-scaler product (S N O)
    widest = 2 * 12 // num_groups
    assert groups_by_degree(csr, (2, enough, widest))
    assert not groups_by_degree(csr, (2, enough, widest + 1))


@pytest.mark.parametrize("autocast", [False, True])
def test_group_products_equal_the_products_of_each_group(autocast):
    """One product per run of rows, empty runs included, forward and
    backward; under CPU autocast in bfloat16, as a matmul."""
    from gnnagg.ops import group_products
    x = torch.randn(7, 5, requires_grad=True)
    weight = torch.randn(3, 4, 5, requires_grad=True)
    sizes = [2, 0, 5]
    expected = torch.cat([x[:2] @ weight[0].t(), x[2:] @ weight[2].t()])
    grads = torch.autograd.grad(expected, (x, weight), torch.ones_like(
        expected))
    with torch.autocast("cpu", enabled=autocast):
        out = group_products(x, weight, sizes)
    assert out.dtype == (torch.bfloat16 if autocast else torch.float32)
    tolerance = dict(atol=0.1, rtol=0.02) if autocast else {}
    torch.testing.assert_close(out.float(), expected, **tolerance)
    for got, want in zip(torch.autograd.grad(out, (x, weight),
                                             torch.ones_like(out)), grads):
        torch.testing.assert_close(got.float(), want, **tolerance)


@pytest.mark.parametrize("max_groups", [32, 0])  # grouped, per scaler
def test_degree_scaled_linear_matches_scaled_copies(
        max_groups, degree_groups_at_any_size):
    csr = csr_view(skewed_graph(12), 12)
    x = torch.randn(12, 5, dtype=torch.double, requires_grad=True)
    weight = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)

    def scale(degrees):  # three scalars per degree, as PNA's scalers
        d = degrees.double()
        return torch.stack([torch.ones_like(d), torch.log1p(d), 1 / (d + 1)],
                           dim=-1)

    factors = scale(csr.degree)  # the N x S K input the kernel avoids
    expected = torch.einsum("ns,sok,nk->no", factors, weight, x)
    out = degree_scaled_linear(x, weight, scale, csr, max_groups)
    torch.testing.assert_close(out, expected)
    assert torch.autograd.gradcheck(
        lambda a, w: degree_scaled_linear(a, w, scale, csr, max_groups),
        (x, weight))
    if max_groups == 0:  # rows already grouped need the grouped products
        with pytest.raises(ValueError, match="rows_by_degree"):
            degree_scaled_linear(x, weight, scale, csr, max_groups,
                                 rows_by_degree=True)
        return
    # rows given in degree order (csr.by_degree's): the same output
    order = csr.degree_groups[1]
    torch.testing.assert_close(degree_scaled_linear(
        x[order], weight, scale, csr, max_groups, rows_by_degree=True),
        expected)
    assert torch.autograd.gradcheck(
        lambda a, w: degree_scaled_linear(a, w, scale, csr, max_groups,
                                          rows_by_degree=True),
        (x[order].detach().requires_grad_(), weight))


def test_weighted_aggregate_matches_gather_scatter():
    edge_index = random_graph(20, 80, num_dst=7)
    csr = csr_view(edge_index, 20, 7)
    alpha = torch.rand(csr.num_edges, 3, requires_grad=True)
    x = torch.randn(20, 3, 5, requires_grad=True)
    out = weighted_aggregate(alpha, x, csr)
    expected = torch.zeros(7, 3, 5).index_add(
        0, csr.row, alpha.unsqueeze(-1) * x[csr.col])
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (alpha, x), grad)
    want = torch.autograd.grad(expected, (alpha, x), grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_gradcheck_weighted_aggregate_bipartite():
    csr = csr_view(random_graph(6, 15, num_dst=4), 6, 4)
    alpha = torch.rand(csr.num_edges, 2, dtype=torch.double,
                       requires_grad=True)
    x = torch.randn(6, 2, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, v: weighted_aggregate(a, v, csr), (alpha, x))


def _gatv2_reference(x_src, x_dst, att, csr, slope, edge_attr, weight):
    s = x_src[csr.col] + x_dst[csr.row]
    if edge_attr is not None:
        s = s + (edge_attr @ weight.t()).view_as(s)
    return (torch.nn.functional.leaky_relu(s, slope) * att).sum(-1)


# ragged chunks recomputed in backward / one pass kept for it (a negative
# slope: recomputed too, the activation does not give its derivative)
@pytest.mark.parametrize("chunk", [7, 1 << 21])
@pytest.mark.parametrize("slope", [0.2, -0.3])
@pytest.mark.parametrize("with_edges", [False, True])
def test_gatv2_score_matches_dense_and_gradcheck(monkeypatch, with_edges,
                                                 slope, chunk):
    import gnnagg.ops.dynamic_attention as module
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", chunk)
    csr = csr_view(skewed_graph(9), 9)
    dt = dict(dtype=torch.double, requires_grad=True)
    x_src = torch.randn(9, 2, 3, **dt)
    x_dst = torch.randn(9, 2, 3, **dt)
    att = torch.randn(2, 3, **dt)
    edge_attr = torch.randn(csr.num_edges, 4, **dt) if with_edges else None
    weight = torch.randn(6, 4, **dt) if with_edges else None
    args = (x_src, x_dst, att, edge_attr, weight)
    inputs = tuple(a for a in args if a is not None)

    def ours(*inp):
        full = list(inp) + [None] * (5 - len(inp))
        return gatv2_score(full[0], full[1], full[2], csr, slope, full[3],
                           full[4])

    expected = _gatv2_reference(x_src, x_dst, att, csr, slope, edge_attr,
                                weight)
    torch.testing.assert_close(ours(*inputs), expected)
    assert torch.autograd.gradcheck(ours, inputs)


@settings(max_examples=25, deadline=None)
@given(num_nodes=st.integers(1, 12), num_edges=st.integers(0, 40),
       seed=st.integers(0, 10_000))
def test_aggregation_is_invariant_to_edge_order(num_nodes, num_edges, seed):
    edge_index = random_graph(num_nodes, num_edges, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(num_edges, 2, generator=gen)
    x = torch.randn(num_nodes, 2, 3, generator=gen)
    shuffle = torch.randperm(num_edges, generator=gen)

    def aggregate(ei, sc):
        csr = csr_view(ei, num_nodes)
        alpha = segment_softmax(csr.to_csr_order(sc), csr.rowptr, csr.row)
        return weighted_aggregate(alpha, x, csr)

    torch.testing.assert_close(aggregate(edge_index, scores),
                               aggregate(edge_index[:, shuffle],
                                         scores[shuffle]))


@pytest.mark.parametrize("exponent", [2.5, "learned"])
def test_clamped_power_matches_autograd_at_the_clamp_bounds(exponent):
    """The operator's value and gradients equal autograd's clamp and power,
    at the bounds too (both pass the gradient where x equals a bound)."""
    x = torch.tensor([[-1.0, 0.0, 1e-4, 0.3], [2.0, 100.0, 150.0, 7.0]],
                     dtype=torch.double, requires_grad=True)
    p = (torch.tensor([[0.7, 1.5, 3.0, -0.5]], dtype=torch.double,
                      requires_grad=True) if exponent == "learned"
         else exponent)
    ours = clamped_power(x, p, 1e-4, 100.0)
    expected = x.clamp(1e-4, 100.0).pow(p)
    torch.testing.assert_close(ours, expected)
    leaves = [x, p] if exponent == "learned" else [x]
    grad = torch.randn_like(ours)
    for got, want in zip(torch.autograd.grad(ours, leaves, grad),
                         torch.autograd.grad(expected, leaves, grad)):
        torch.testing.assert_close(got, want)
    assert ours.grad_fn.name().startswith("torch::autograd::CppNode") or \
        "clamped_power" in ours.grad_fn.name()


def test_clamped_power_without_a_positive_floor_is_autograds():
    # where the clamped value may be 0, the operator's p*y/x is undefined:
    # the plain chain runs (its gradient at 0 is PyTorch's)
    x = torch.tensor([0.0, 0.5, 2.0], requires_grad=True)
    for low in (None, 0.0):
        out = clamped_power(x, 2.0, low, None)
        assert "clamped_power" not in out.grad_fn.name()
        out.sum().backward()
        torch.testing.assert_close(x.grad, 2 * x.detach())
        x.grad = None


def test_clamped_power_keeps_low_precision_inputs_as_pyg_does():
    x = torch.rand(5, 3, dtype=torch.bfloat16, requires_grad=True)
    p = torch.nn.Parameter(torch.tensor([1.5]))  # PyG's learned p: float32
    out = clamped_power(x, p, 1e-4, 100.0)
    assert out.dtype == (x.clamp(1e-4, 100.0).pow(p)).dtype
    out.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and p.grad.dtype == torch.float32


def test_chunks_grow_off_the_cpu():
    from gnnagg.ops.library import DEVICE_CHUNK_FACTOR, chunk_length
    assert chunk_length(1 << 15, torch.device("cpu")) == 1 << 15
    assert chunk_length(1 << 15, torch.device("cuda")) == \
        (1 << 15) * DEVICE_CHUNK_FACTOR > 1 << 15


def _around_the_std_floor(dtype):
    """Variances whose clamped square root lies at PyG's std floor,
    :math:`\\sqrt{10^{-5}}`: every finite non-negative 16-bit value of a
    half type, else a fine grid through :math:`10^{-5}` with its
    neighbours in ``dtype``."""
    if dtype in (torch.float16, torch.bfloat16):
        values = torch.arange(1 << 15, dtype=torch.int32).to(
            torch.int16).view(dtype)
        return values[values.isfinite()]
    eps = torch.tensor(1e-5, dtype=dtype)
    neighbours = [torch.nextafter(eps, eps.new_tensor(0.0)), eps,
                  torch.nextafter(eps, eps.new_tensor(1.0))]
    return torch.cat([torch.linspace(0.99e-5, 1.01e-5, 20001, dtype=dtype),
                      torch.stack(neighbours), eps.new_tensor([0.0, 1.0])])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16,
                                   torch.float32, torch.float64])
def test_std_floor_zeroes_what_pygs_masked_fill_zeroes(dtype):
    """:func:`floored_std` (a threshold, in place or not) equals PyG's
    ``masked_fill`` of the clamped square root bit for bit at every value
    around the floor, and its gradient equals PyG's autograd; so does the
    std of the moments operator, whose backward divides by infinity where
    PyG's masks."""
    from torch_geometric.utils import scatter
    from gnnagg.ops.segment import floored_std
    variance = _around_the_std_floor(dtype)
    clamped = variance.clamp(min=1e-5).sqrt()
    want = clamped.masked_fill(clamped <= 1e-5 ** 0.5, 0.0)
    assert torch.equal(floored_std(variance.clone()), want)
    leaf = variance.clone().requires_grad_()
    got = floored_std(leaf, inplace=False)
    assert torch.equal(got, want)
    grad = torch.rand(variance.shape, dtype=dtype)
    reference = leaf.clamp(min=1e-5).sqrt()
    reference = reference.masked_fill(reference <= 1e-5 ** 0.5, 0.0)
    assert torch.equal(torch.autograd.grad(got, leaf, grad)[0],
                       torch.autograd.grad(reference, leaf, grad)[0])
    # pairs (0, 2s): a variance of exactly s^2 for each value's root s
    roots = variance.sqrt()[:4096]
    messages = torch.stack([torch.zeros_like(roots), 2 * roots], 1)
    messages = messages.reshape(-1, 1).requires_grad_()
    index = torch.arange(roots.numel()).repeat_interleave(2)
    std = message_moments(messages, index, roots.numel(), std=True)[1]
    mean = scatter(messages, index, 0, roots.numel(), "mean")
    square_mean = scatter(messages * messages, index, 0, roots.numel(),
                          "mean")
    pyg = (square_mean - mean * mean).clamp(min=1e-5).sqrt()
    pyg = pyg.masked_fill(pyg <= 1e-5 ** 0.5, 0.0)
    assert torch.equal(std, pyg)
    upstream = torch.rand(std.shape, dtype=dtype)
    got_grad, = torch.autograd.grad(std, messages, upstream)
    want_grad, = torch.autograd.grad(pyg, messages, upstream)
    # documented exception: a variance of exactly 1e-5 in the dtype, whose
    # gradient PyG's clamp passes, gets 0 (the std cannot tell it apart
    # from a clamped one)
    at_eps = ((square_mean - mean * mean) == torch.tensor(1e-5, dtype=dtype))
    at_eps = at_eps.repeat_interleave(2, 0)
    assert (got_grad[at_eps] == 0).all()
    torch.testing.assert_close(got_grad[~at_eps], want_grad[~at_eps])


@settings(max_examples=30, deadline=None)
@given(num_segments=st.integers(1, 6), num_messages=st.integers(0, 25),
       sorted_messages=st.booleans(), uses=st.sampled_from(
           ["mean", "variance", "both", "std"]), seed=st.integers(0, 2**16))
def test_message_moments_match_their_definition(num_segments, num_messages,
                                                sorted_messages, uses, seed):
    """Mean and population variance of each destination's messages (0 when
    it has none), and gradients equal to the autograd of
    ``mean(x * x) - mean(x) ** 2``, whichever moments are used; with
    ``std=True``, PyG's floored standard deviation and its gradient."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, num_segments, (num_messages,), generator=gen)
    rowptr = None
    if sorted_messages:
        index = index.sort().values
        rowptr = torch.zeros(num_segments + 1, dtype=torch.long)
        rowptr[1:] = torch.bincount(index, minlength=num_segments).cumsum(0)
    x = torch.randn(num_messages, 3, dtype=torch.double, generator=gen,
                    requires_grad=True)
    mean, variance = message_moments(x, index, num_segments, rowptr)
    std = message_moments(x, index, num_segments, rowptr, std=True)[1]
    count = torch.bincount(index, minlength=num_segments).clamp(min=1)
    count = count.double().unsqueeze(1)
    want_mean = torch.zeros(num_segments, 3, dtype=torch.double).index_add(
        0, index, x) / count
    want_variance = torch.zeros_like(want_mean).index_add(
        0, index, x * x) / count - want_mean ** 2
    for segment in range(num_segments):  # the definition, segment by segment
        members = x[index == segment].detach()
        if members.numel():
            torch.testing.assert_close(mean[segment], members.mean(0))
            torch.testing.assert_close(variance[segment],
                                       members.var(0, unbiased=False))
        else:
            assert (mean[segment] == 0).all()
            assert (variance[segment] == 0).all()
    floored = want_variance.clamp(min=1e-5).sqrt()
    want_std = floored.masked_fill(floored <= 1e-5 ** 0.5, 0.0)
    torch.testing.assert_close(std, want_std)
    got = {"mean": [mean], "variance": [variance],
           "both": [mean, variance], "std": [std]}[uses]
    want = {"mean": [want_mean], "variance": [want_variance],
            "both": [want_mean, want_variance], "std": [want_std]}[uses]
    if num_messages == 0:
        return
    grads = [torch.randn_like(t) for t in got]
    torch.testing.assert_close(torch.autograd.grad(got, x, grads)[0],
                               torch.autograd.grad(want, x, grads)[0])


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_native_segment_reduce_as_sparse_product_matches_segment_reduce(
        reduce, shape):
    """The CPU's sparse-product segment reduction (float rows) gives
    ``torch.segment_reduce``'s values, 0 for empty segments, any trailing
    shape, and a non-contiguous input."""
    from gnnagg.ops.backend import _sparse_segment_reduce
    rowptr = torch.tensor([0, 2, 2, 5, 6, 6])
    src = torch.randn((6,) + shape + (2,), dtype=torch.double)[..., 0]
    assert not src.is_contiguous() or not shape
    want = torch.segment_reduce(src, reduce, offsets=rowptr)
    want = torch.where((rowptr.diff() > 0).view((-1,) + (1,) * len(shape)),
                       want, 0.0)
    torch.testing.assert_close(_sparse_segment_reduce(src, rowptr, reduce),
                               want)


def test_scratch_reuses_one_buffer_per_name_dtype_and_mode():
    from gnnagg.ops import clear_scratch
    from gnnagg.ops.scratch import SCRATCH_BYTES, scratch
    clear_scratch()
    like = torch.empty(0)
    first = scratch("test", (4, 3), like)
    assert scratch("test", (2, 5), like).data_ptr() == first.data_ptr()
    assert scratch("test", (2, 5), like).shape == (2, 5)
    assert scratch("other", (4, 3), like).data_ptr() != first.data_ptr()
    assert scratch("test", (4, 3), like.double()).dtype == torch.double
    with torch.inference_mode():  # inference tensors stay apart
        assert scratch("test", (4, 3), like).data_ptr() != first.data_ptr()
    grown = scratch("test", (40, 3), like)  # a larger request grows it
    assert scratch("test", (4, 3), like).data_ptr() == grown.data_ptr()
    big = (SCRATCH_BYTES // 4 + 1,)
    assert scratch("test", big, like).data_ptr() != grown.data_ptr()
    clear_scratch()
    assert scratch("test", (4, 3), like).data_ptr() != grown.data_ptr()


def test_gradients_do_not_alias_the_kernels_scratch_buffers():
    """A neighbour maximum's backward runs in scratch buffers: the gradient
    it returns is not one of them (a second backward leaves it intact)."""
    csr = csr_view(skewed_graph(12), 12)
    grads = []
    for seed in (0, 1):
        x = torch.randn(12, 4, generator=torch.Generator().manual_seed(seed),
                        requires_grad=True)
        neighbor_stats(x, csr, ["max", "min"])["max"].sum().backward()
        grads.append((x.grad, x.grad.clone()))
    for grad, copy in grads:
        torch.testing.assert_close(grad, copy)
    assert not torch.equal(grads[0][0], grads[1][0])

r"""A cached compressed-sparse-row (CSR) view of a graph.

Every kernel in :mod:`gnnagg.ops` works on edges grouped by destination node.
:class:`CSRGraph` holds that grouping for an ``edge_index`` of shape
``(2, E)`` (row 0 = source :math:`j`, row 1 = destination :math:`i`):

* ``rowptr`` (``num_dst + 1``): edges of destination ``i`` occupy CSR slots
  ``rowptr[i]:rowptr[i+1]``;
* ``col`` / ``row``: source / destination of each slot;
* ``perm``: slot ``k`` holds edge ``perm[k]`` of the caller's order, so a
  per-edge tensor ``t`` is brought into CSR order by ``t[perm]``;
* the transpose (slots grouped by source), built lazily for backward passes.

:func:`csr_view` builds the view once per ``edge_index`` tensor and caches it
for that tensor (a weak table, nothing set on the tensor), so every layer of
a multi-layer model reuses it. A cached view
is used only while the tensor holds the same edges as when it was built.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary
from torch_geometric import EdgeIndex
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import (cumsum, is_torch_sparse_tensor,
                                   to_edge_index)

# PyTorch warns once per process that sparse CSR tensors are in beta; every
# gnnagg layer builds them internally, so a user would see it on the first
# call of a layer whose PyG twin warns nothing (PyG silences torch's own
# sparse-beta warning the same way in ``torch_geometric.utils._scatter``).
warnings.filterwarnings(
    "ignore", message=".*Sparse CSR tensor support is in beta state.*")

T = TypeVar("T")

#: ``edge_index`` -> the CSR views built from it, held weakly (an entry
#: goes with its tensor); nothing is stored on the caller's tensors.
#: :func:`cached_views` shows an entry, :func:`clear_csr_cache` drops them.
_VIEWS: WeakIdKeyDictionary = WeakIdKeyDictionary()
#: attribute of the EdgeIndex a CSRGraph hands to ``propagate``: the graph
_GRAPH_ATTR = "_gnnagg_csr"


def outside_inference_mode(build: Callable[[], T]) -> T:
    """``build()`` with ``torch.inference_mode`` off, so that what a cache
    keeps is a normal tensor: one made in inference mode could not be
    saved for backward when training resumes on the same graph
    (evaluation under ``inference_mode``, then training). While
    ``torch.compile`` traces, ``build()`` as it is (the compiler cannot
    read the mode; nothing built in a traced graph is cached)."""
    if torch.compiler.is_compiling() or \
            not torch.is_inference_mode_enabled():
        return build()
    with torch.inference_mode(False):
        return build()


class cached_property:  # noqa: N801 - functools' name and behaviour
    """``functools.cached_property`` without the lock it takes on Python
    < 3.12, a context manager ``torch.compile`` cannot trace: the value is
    computed on first access (outside inference mode,
    :func:`outside_inference_mode`) and stored on the instance."""

    def __init__(self, method) -> None:
        self.method, self.name = method, method.__name__
        self.__doc__ = method.__doc__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = outside_inference_mode(lambda: self.method(instance))
        instance.__dict__[self.name] = value
        return value


class CSRGraph:
    r"""Edges grouped by destination, with the permutation back to the
    caller's edge order.

    When built with ``self_loops=True``, the caller's order is that of
    PyG's ``add_self_loops(remove_self_loops(edge_index))``: the edges that
    are not self-loops, in their order (``kept_edges`` indexes them), then
    one loop ``(i, i)`` for each ``i < min(num_src, num_dst)``.
    """

    def __init__(self, rowptr: Tensor, col: Tensor, perm: Tensor,
                 num_src: int, num_dst: int,
                 kept_edges: Optional[Tensor] = None,
                 num_loops: int = 0,
                 num_input_edges: Optional[int] = None) -> None:
        self.rowptr = rowptr
        self.col = col
        self.perm = perm
        self.num_src = num_src
        self.num_dst = num_dst
        self.kept_edges = kept_edges
        self.num_loops = num_loops
        #: number of edges of the ``edge_index`` the view was built from
        self.num_input_edges = (col.numel() if num_input_edges is None
                                else num_input_edges)

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @cached_property
    def degree(self) -> Tensor:
        """In-degree of every destination node."""
        return self.rowptr.diff()

    @cached_property
    def row(self) -> Tensor:
        """Destination node of every CSR slot."""
        return segment_ids(self.rowptr, self.num_edges)

    @cached_property
    def max_degree(self) -> int:
        return int(self.degree.max()) if self.num_dst > 0 else 0

    @cached_property
    def degree_groups(self) -> Tuple[Tensor, Tensor, Tensor, List[int]]:
        r"""Destination nodes grouped by in-degree: ``(degrees, order,
        position, sizes)`` with the distinct degrees ascending, the nodes in
        that order (stable), each node's position in ``order``, and the
        group sizes. Node-wise functions of the degree (PNA's scalers) are
        then computed once per group."""
        degrees, group, sizes = torch.unique(
            self.degree, return_inverse=True, return_counts=True)
        order = torch.argsort(group, stable=True)
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel(), device=order.device)
        return degrees, order, position, sizes.tolist()

    @cached_property
    def by_degree(self) -> "CSRGraph":
        r"""This graph with its destination nodes in the order of
        :attr:`degree_groups` (ascending in-degree): destination ``r`` of it
        is node ``order[r]`` of this one, with the same in-edges. Node
        statistics computed on it come out grouped by degree, so a
        degree-wise product (:func:`gnnagg.ops.degree_scaled_linear`) need
        not permute them."""
        _, order, _, _ = self.degree_groups
        degree = self.degree.index_select(0, order)
        rowptr = cumsum(degree)
        row = segment_ids(rowptr, self.num_edges)
        # slot k of the new view is slot start_old - start_new + k of this one
        offset = self.rowptr.index_select(0, order) - rowptr[:-1]
        slot = offset.index_select(0, row) + torch.arange(
            self.num_edges, device=row.device)
        graph = CSRGraph(rowptr, self.col.index_select(0, slot),
                         self.perm.index_select(0, slot), self.num_src,
                         self.num_dst, self.kept_edges, self.num_loops,
                         self.num_input_edges)
        graph.__dict__.update(degree=degree, row=row)  # computed already
        return graph

    @cached_property
    def transpose(self) -> Tuple[Tensor, Tensor, Tensor]:
        r"""``(rowptr_t, col_t, slot_t)``: slots grouped by source node;
        ``col_t`` is the destination and ``slot_t`` the CSR slot of each."""
        slot_t = torch.argsort(self.col, stable=True)
        counts = _counts(self.col, self.num_src)
        rowptr_t = cumsum(counts)
        return rowptr_t, self.row[slot_t], slot_t

    def head_blocks(self, heads: int, transpose: bool = False
                    ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The adjacency of every one of ``heads`` heads as one block
        matrix, cached per ``(heads, transpose)``: row :math:`iH + h`
        holds the edges into node :math:`i` at columns :math:`jH + h`, so
        that an ``(N, H, C)`` tensor, viewed as ``(N H, C)``, is multiplied
        by all heads at once. Returns ``(rowptr, col, slot)``, ``rowptr``
        and ``col`` as int32 (what MKL's products take without a copy) and
        ``slot`` the index of every entry's value in a flattened ``(E, H)``
        per-edge tensor in CSR order. With ``transpose`` it is the
        transposed matrix (rows :math:`jH + h` of source nodes)."""
        blocks = self.__dict__.setdefault("_head_blocks", {})
        key = (heads, transpose)
        if key not in blocks:
            blocks[key] = outside_inference_mode(
                lambda: self._build_head_blocks(heads, transpose))
        return blocks[key]

    def _build_head_blocks(self, heads: int, transpose: bool
                           ) -> Tuple[Tensor, Tensor, Tensor]:
        """:meth:`head_blocks`, built."""
        if transpose:
            rowptr, col, slot = self.transpose
        else:
            rowptr, col, slot = self.rowptr, self.col, None
        head = torch.arange(heads, device=col.device)

        def per_head(index: Tensor) -> Tensor:  # (k, h) -> index[k] H + h
            return (index.unsqueeze(1) * heads + head).view(-1)

        # entry (slot k, head h), flattened as k H + h, of row i goes to
        # block row i H + h at s_i H + h d_i + (k - s_i): each row's
        # (d_i, H) entries transposed, no sort
        row = segment_ids(rowptr, col.numel())
        start, degree = rowptr[:-1][row], rowptr.diff()[row]
        slots = torch.arange(col.numel(), device=col.device)
        position = (start * (heads - 1) + slots).unsqueeze(1) + \
            head * degree.unsqueeze(1)
        order = slots.new_empty(col.numel() * heads)
        order[position.view(-1)] = torch.arange(
            order.numel(), device=col.device)
        if slot is not None:  # slot k of the transpose is CSR slot[k]
            slot = per_head(slot)[order]
        rowptr_blocks = cumsum(rowptr.diff().repeat_interleave(heads))
        return (rowptr_blocks.int(), per_head(col)[order].int(),
                order if slot is None else slot)

    @cached_property
    def by_destination(self) -> EdgeIndex:
        r"""The CSR slots as PyG's :class:`EdgeIndex` sorted by destination
        (``sort_order="col"``), with ``sparse_size = (num_src, num_dst)``:
        what :meth:`MessagePassing.propagate` fuses on. It carries this
        graph, so :func:`csr_of_adjacency` gets it back without work."""
        edge_index = EdgeIndex(torch.stack([self.col, self.row]),
                               sparse_size=(self.num_src, self.num_dst),
                               sort_order="col")
        setattr(edge_index, _GRAPH_ATTR, self)
        return edge_index

    def edge_index(self) -> Tensor:
        """The ``(2, E)`` edge index in the caller's order (loops included)."""
        out = torch.empty(2, self.num_edges, dtype=torch.long,
                          device=self.col.device)
        out[0, self.perm] = self.col
        out[1, self.perm] = self.row
        return out

    def to_csr_order(self, edge_values: Tensor) -> Tensor:
        """Reorder a per-edge tensor from the caller's order to CSR order."""
        return edge_values.index_select(0, self.perm)

    def to_edge_order(self, csr_values: Tensor) -> Tensor:
        """Reorder a per-edge tensor from CSR order to the caller's order."""
        out = torch.empty_like(csr_values)
        out[self.perm] = csr_values
        return out


def segment_ids(rowptr: Tensor, num_items: int) -> Tensor:
    """The segment of each of the ``num_items`` entries that the offsets
    ``rowptr`` group (``row`` of a CSR view)."""
    return torch.repeat_interleave(
        torch.arange(rowptr.numel() - 1, device=rowptr.device),
        rowptr.diff(), output_size=num_items)


def csr_matrix(rowptr: Tensor, col: Tensor, values: Tensor,
               shape: Tuple[int, int]) -> Tensor:
    """The sparse CSR matrix of a structure already known to be valid (a
    CSR view's, or one built from it): no invariant checks, no host sync.
    ``values`` of ones make it a 0/1 pattern (an adjacency, a segment
    matrix) for products with or without reduction."""
    return torch.sparse_csr_tensor(rowptr, col, values, shape,
                                   check_invariants=False)


def sparse_product(matrix: Tensor, dense: Tensor,
                   out: Optional[Tensor] = None) -> Tensor:
    """``matrix @ dense`` for a CPU CSR ``matrix`` of float32/float64 and a
    dense 2-D ``dense``, into ``out`` (a buffer whose contents it
    overwrites) or a fresh output, by ``torch.addmm(out, matrix, dense,
    beta=0, out=out)``, not recorded by autograd. ``@`` and
    ``torch.sparse.mm`` fill their output before MKL's product adds into
    it: this took half their time or less (9,780 slots of 128 molecules
    summed, 4 values each: 7 against 19 and 47 us; 64 values: 64 against
    126 and 98 us; ogbn-arxiv's 2.3M edges, 64 values: 32 against 49 ms by
    ``torch.sparse.mm``), with int32 indices, which MKL takes as they are
    (int64 ones it converts on every call)."""
    if out is None:
        out = dense.new_empty(matrix.size(0), dense.size(1))
    return torch.addmm(out, matrix, dense, beta=0, out=out)


def selection_matrix(rowptr: Tensor, slots: Optional[Tensor],
                     num_items: int, like: Tensor) -> Tensor:
    """The ``N x num_items`` 0/1 CSR matrix (``N = rowptr.numel() - 1``)
    whose row ``i`` selects items ``slots[rowptr[i]:rowptr[i+1]]``, or
    those consecutive items without ``slots``: segments of CSR-ordered
    values, a transpose's slot selection, an adjacency (``slots`` the
    neighbours, ``num_items`` the source nodes). ``like``'s dtype and
    device; int32 indices where they fit, which MKL's products take as
    they are (int64 ones it converts on every call)."""
    length = num_items if slots is None else max(num_items, slots.numel())
    index_dtype = _index_dtype(length)
    if slots is None:
        slots = torch.arange(num_items, dtype=index_dtype, device=like.device)
    return csr_matrix(rowptr.to(index_dtype), slots.to(index_dtype),
                      like.new_ones(slots.numel()),
                      (rowptr.numel() - 1, num_items))


def one_hot_matrix(index: Tensor, num_cols: int, like: Tensor) -> Tensor:
    """The ``len(index) x num_cols`` 0/1 CSR matrix with one 1 a row, in
    column ``index[k]`` of row ``k``: its product with ``x`` is
    ``x[index]`` (:func:`selection_matrix`'s dtypes)."""
    rowptr = torch.arange(index.numel() + 1, device=index.device,
                          dtype=_index_dtype(index.numel() + 1))
    return selection_matrix(rowptr, index, num_cols, like)


def _index_dtype(length: int) -> torch.dtype:
    """int32 for indices and offsets up to ``length``, where it fits."""
    return torch.int32 if length < 2 ** 31 else torch.long


def reduce_rows(matrix: Tensor, values: Tensor, reduce: str,
                out: Optional[Tensor] = None) -> Tensor:
    """``torch.sparse.mm(matrix, values, reduce)`` (``"sum"``, ``"amax"``,
    ``"amin"``) over ``values``' first dimension, whatever its trailing
    shape: ``(matrix.size(0), *values.shape[1:])``, written over ``out``
    where given. CPU float sums that autograd does not record are
    :func:`sparse_product`, straight into ``out``."""
    rows = values.reshape(values.size(0), math.prod(values.shape[1:]))
    flat_out = None if out is None else out.view(matrix.size(0), rows.size(1))
    if reduce == "sum" and _plain_product(matrix, rows):
        result = sparse_product(matrix, rows, flat_out)
    else:
        result = torch.sparse.mm(matrix, rows, reduce)
        if flat_out is not None:
            result = flat_out.copy_(result)
    return result.view((matrix.size(0),) + tuple(values.shape[1:]))


def sum_by_source(values: Tensor, rowptr_t: Tensor, slot_t: Tensor,
                  out: Optional[Tensor] = None) -> Tensor:
    r""":math:`\sum_{k \to j} v_k` for every source :math:`j`: per-slot
    ``values`` (CSR order) summed over each source's slots (the
    transpose's ``rowptr_t``, ``slot_t``; see :attr:`CSRGraph.transpose`),
    written over ``out`` where given."""
    selection = selection_matrix(rowptr_t, slot_t, values.size(0), values)
    return reduce_rows(selection, values, "sum", out)


def _plain_product(matrix: Tensor, dense: Tensor) -> bool:
    """Whether :func:`sparse_product` takes ``matrix @ dense``."""
    return (dense.device.type == "cpu" and
            dense.dtype in (torch.float32, torch.float64) and
            matrix.dtype == dense.dtype and
            not (torch.is_grad_enabled() and
                 (dense.requires_grad or matrix.requires_grad)))


def index_counts(index: Tensor, length: int,
                 dtype: torch.dtype = torch.long) -> Tensor:
    """Occurrences of each value of ``index`` in ``[0, length)``, by a
    scatter of static size: no host sync, every device (an entry outside
    the range fails in the kernel)."""
    return torch.zeros(length, dtype=dtype, device=index.device).index_add_(
        0, index, torch.ones_like(index, dtype=dtype))


def _counts(index: Tensor, length: int) -> Tensor:
    """Occurrences of each value in ``[0, length)`` (``bincount`` in eager
    mode; :func:`index_counts` while ``torch.compile`` traces)."""
    if torch.compiler.is_compiling():
        return index_counts(index, length)
    return torch.bincount(index, minlength=length)


def check_edge_index(edge_index: Tensor, num_src: int, num_dst: int) -> None:
    """Raise ``ValueError`` unless ``edge_index`` is a ``(2, E)`` integer
    tensor whose sources are in ``[0, num_src)`` and destinations in
    ``[0, num_dst)``."""
    if not isinstance(edge_index, Tensor):
        raise TypeError("edge_index must be a torch.Tensor, got "
                        f"{type(edge_index).__name__}")
    if edge_index.dtype not in (torch.long, torch.int32):
        raise ValueError("edge_index must hold integers (torch.long), got "
                         f"dtype {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError("edge_index must have shape (2, num_edges), got "
                         f"{tuple(edge_index.shape)}")
    if edge_index.numel() == 0:
        return
    lo = edge_index.amin(dim=1).tolist()
    hi = edge_index.amax(dim=1).tolist()
    if min(lo) < 0:
        raise ValueError(f"edge_index holds a negative node index ({min(lo)})")
    if hi[0] >= num_src:
        raise ValueError(f"edge_index refers to source node {hi[0]}, but "
                         f"only {num_src} source nodes exist")
    if hi[1] >= num_dst:
        raise ValueError(f"edge_index refers to destination node {hi[1]}, "
                         f"but only {num_dst} destination nodes exist")


def non_loop_edges(edge_index: Tensor) -> Tensor:
    """Positions of the edges of ``edge_index`` that are not self-loops, in
    order (their number is data: under ``torch.compile`` a graph break,
    unless ``capture_dynamic_output_shape_ops`` is set)."""
    return (edge_index[0] != edge_index[1]).nonzero().view(-1)


def build_csr(edge_index: Tensor, num_src: int, num_dst: int,
              self_loops: bool = False,
              kept_edges: Optional[Tensor] = None) -> CSRGraph:
    """Build (without caching) the CSR view of a checked ``edge_index``
    (while ``torch.compile`` traces, the range check, a host sync, is left
    to the kernels' own bounds checks). Edges already sorted by
    destination are not sorted again. With ``self_loops``, ``kept_edges``
    may give the positions of the edges that are not self-loops, when the
    caller has them (:func:`non_loop_edges`)."""
    if torch.compiler.is_compiling():
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError("edge_index must have shape (2, num_edges), "
                             f"got {tuple(edge_index.shape)}")
    else:
        check_edge_index(edge_index, num_src, num_dst)
    src, dst = edge_index[0].long(), edge_index[1].long()
    num_input_edges = src.numel()
    num_loops = 0
    if self_loops:
        if kept_edges is None:
            kept_edges = non_loop_edges(edge_index)
        num_loops = min(num_src, num_dst)
        loop = torch.arange(num_loops, device=src.device)
        src = torch.cat([src[kept_edges], loop])
        dst = torch.cat([dst[kept_edges], loop])
    else:
        kept_edges = None  # only a self-loop view keeps some edges
    if not torch.compiler.is_compiling() and _is_sorted(dst):
        # already grouped by destination: one comparison pass, no sort
        # (an SVF batch's 255,000 edges: 0.3 against 10 ms on one thread)
        perm = torch.arange(dst.numel(), device=dst.device)
        col = src.clone()  # never the caller's own row
    else:
        perm = torch.argsort(dst, stable=True)
        col = src[perm]
    counts = _counts(dst, num_dst)
    return CSRGraph(cumsum(counts), col, perm, num_src,
                    num_dst, kept_edges, num_loops, num_input_edges)


def _is_sorted(values: Tensor) -> bool:
    """Whether ``values`` never decrease (a host sync)."""
    return bool((values[1:] >= values[:-1]).all())


def csr_view(edge_index: Tensor, num_src: int, num_dst: Optional[int] = None,
             self_loops: bool = False,
             kept_edges: Optional[Tensor] = None) -> CSRGraph:
    r"""The CSR view of ``edge_index``, cached for that tensor (in a weak
    table of gnnagg's, :func:`cached_views`: nothing is set on the tensor).

    The cache keeps a copy of the edges it was built from and is used only
    while ``edge_index`` still holds exactly those (one comparison, far
    cheaper than a rebuild): an edit of any kind, in place, through
    ``.data`` or through ``.numpy()``, gets a new view. While
    ``torch.compile`` traces, the view is built inside the graph and not
    cached.

    Args:
        edge_index: ``(2, E)`` source/destination indices.
        num_src, num_dst: numbers of source and destination nodes
            (``num_dst`` defaults to ``num_src``).
        self_loops: drop existing self-loops and add one per node, as PyG's
            attention layers do.
        kept_edges: while ``torch.compile`` traces, the positions of the
            edges that are not self-loops, if the caller has them
            (:func:`non_loop_edges`).
    """
    num_dst = num_src if num_dst is None else num_dst
    if torch.compiler.is_compiling():  # part of the traced graph
        return build_csr(edge_index, num_src, num_dst, self_loops,
                         kept_edges)
    key = (int(num_src), int(num_dst), bool(self_loops))
    cache = _VIEWS.get(edge_index)
    if cache is not None and key in cache.views and cache.holds(edge_index):
        return cache.views[key]
    csr = outside_inference_mode(
        lambda: build_csr(edge_index, num_src, num_dst, self_loops))
    if cache is None or not cache.holds(edge_index):
        cache = _VIEWS[edge_index] = outside_inference_mode(
            lambda: _ViewCache(edge_index))
    cache.views[key] = csr
    return csr


def cached_views(edge_index: Tensor) -> Dict[Tuple[int, int, bool],
                                             CSRGraph]:
    """The CSR views cached for ``edge_index``, by ``(num_src, num_dst,
    self_loops)`` (empty when none is, or when the tensor's edges changed
    since they were built)."""
    cache = _VIEWS.get(edge_index)
    return dict(cache.views) if cache is not None and \
        cache.holds(edge_index) else {}


def clear_csr_cache() -> None:
    """Drop every cached CSR view and message grouping (each goes with its
    tensor anyway)."""
    _VIEWS.clear()
    _GROUPINGS.clear()


class _ViewCache:
    """The views built from one set of edges, and a copy of those edges."""

    def __init__(self, edge_index: Tensor) -> None:
        self.edges = edge_index.detach().clone()
        self.views: Dict[Tuple[int, int, bool], "CSRGraph"] = {}

    def holds(self, edge_index: Tensor) -> bool:
        """Whether ``edge_index`` still holds the edges the views came
        from."""
        return (self.edges.shape == edge_index.shape
                and self.edges.device == edge_index.device
                and torch.equal(self.edges, edge_index))


def csr_of_adjacency(adj_t) -> Tuple[CSRGraph, Optional[Tensor]]:
    r"""The CSR view of an adjacency as :meth:`MessagePassing.propagate`
    hands it to ``message_and_aggregate`` (an :class:`EdgeIndex` sorted by
    destination, or a transposed torch.sparse / ``SparseTensor`` adjacency,
    rows = destinations), and the permutation from the adjacency's edge
    order (that of PyG's per-edge tensors) to CSR order, or None where the
    two are the same."""
    graph = getattr(adj_t, _GRAPH_ATTR, None)
    if graph is not None:
        return graph, None
    if isinstance(adj_t, EdgeIndex):
        if not adj_t.is_sorted_by_col:
            raise ValueError("expected an EdgeIndex sorted by destination "
                             "(sort_order='col')")
        num_src, num_dst = adj_t.get_sparse_size()
        col = adj_t.as_tensor()[0]
        ids = torch.arange(col.numel(), device=col.device)
        return CSRGraph(adj_t.get_indptr(), col, ids, num_src, num_dst), None
    if isinstance(adj_t, SparseTensor):
        rowptr, col, _ = adj_t.csr()
        ids = torch.arange(col.numel(), device=col.device)
        return CSRGraph(rowptr, col, ids, adj_t.size(1), adj_t.size(0)), None
    if is_torch_sparse_tensor(adj_t):
        (dst, src), _ = to_edge_index(adj_t)
        graph = build_csr(torch.stack([src, dst]), adj_t.size(1),
                          adj_t.size(0))
        return graph, graph.perm
    raise TypeError("expected an EdgeIndex, a torch.sparse tensor or a "
                    f"SparseTensor, got {type(adj_t).__name__}")


#: the tensor a destination index is a view of (or the index itself) ->
#: ``{view geometry and num_segments: _Grouping}``, held weakly
_GROUPINGS: WeakIdKeyDictionary = WeakIdKeyDictionary()
#: views of one tensor whose groupings are kept (an ``edge_index`` has two
#: rows; a tensor sliced into many indices keeps its latest slices only)
MAX_GROUPED_VIEWS = 8


class _Grouping:
    """A copy of an index and what was built from it: its
    int32 grouping (:func:`message_grouping`) and its CSR view
    (:func:`csr_from_index`)."""

    def __init__(self, index: Tensor) -> None:
        self.index = index.clone()
        self.grouping: Optional[Tuple[Tensor, Tensor]] = None
        self.csr: Optional["CSRGraph"] = None


def _grouping_entry(index: Tensor, num_segments: int
                    ) -> Tuple[Optional[_Grouping], bool]:
    """The cache entry of ``index`` (see :func:`message_grouping`) and
    whether it was there already; a new entry replaces one whose index
    changed. ``(None, False)`` where nothing is cached: while
    ``torch.compile`` traces, off the CPU, past int32's range."""
    if torch.compiler.is_compiling() or index.device.type != "cpu" or \
            index.numel() >= 2 ** 31 or num_segments >= 2 ** 31:
        return None, False
    base = index if index._base is None else index._base
    views = _GROUPINGS.get(base)
    if views is None:
        views = _GROUPINGS[base] = {}
    key = (index.storage_offset(), index.stride(), index.numel(),
           num_segments)
    entry = views.get(key)
    if entry is not None and torch.equal(entry.index, index):
        return entry, True
    views.pop(key, None)
    if len(views) >= MAX_GROUPED_VIEWS:  # the oldest goes
        del views[next(iter(views))]
    entry = views[key] = outside_inference_mode(lambda: _Grouping(index))
    return entry, False


def message_grouping(index: Tensor, num_segments: int
                     ) -> Optional[Tuple[Tensor, Tensor]]:
    r"""``(rowptr, perm)``, int32: the CSR grouping of messages by their
    destination ``index`` (slot ``k`` of destination ``i``'s segment
    ``rowptr[i]:rowptr[i+1]`` holds message ``perm[k]``), on the CPU.

    An aggregation used as ``aggr=`` sees only ``index``, a fresh view of
    the caller's ``edge_index`` on every call (``edge_index[1]``). The
    grouping is cached for the tensor that view is of, per view, in a weak
    table, with a copy of the index: built (one stable sort) on the first
    call, used while the index holds the same values (one comparison per
    call, as :func:`csr_view`'s cache), for up to
    :data:`MAX_GROUPED_VIEWS` views of one tensor. Every call on a graph
    thus runs the same kernel, and repeated calls give identical results.
    None while ``torch.compile`` traces, off the CPU, and past int32's
    range. An entry of ``index`` outside ``[0, num_segments)`` fails in
    the count that builds the grouping (``index_add_``'s ``IndexError`` or
    ``RuntimeError``)."""
    entry, _ = _grouping_entry(index, num_segments)
    if entry is None:
        return None
    if entry.grouping is None:
        entry.grouping = outside_inference_mode(
            lambda: _grouping_of(index, num_segments, entry.csr))
    return entry.grouping


def _grouping_of(index: Tensor, num_segments: int,
                 csr: Optional["CSRGraph"]) -> Tuple[Tensor, Tensor]:
    """``(rowptr, perm)`` of :func:`message_grouping`, from the index's
    cached CSR view where :func:`csr_from_index` built one (no second
    sort), else built."""
    if csr is not None:
        return csr.rowptr.int(), csr.perm.int()
    perm = torch.argsort(index, stable=True)
    rowptr = cumsum(index_counts(index, num_segments))
    return rowptr.int(), perm.int()


def csr_from_index(index: Optional[Tensor], num_segments: int,
                   ptr: Optional[Tensor] = None,
                   num_messages: Optional[int] = None) -> CSRGraph:
    """The grouping of messages by their destination ``index`` as a CSR view
    whose "sources" are the messages themselves (``col = perm``). With a
    ``ptr`` the messages are already grouped and nothing is sorted; an
    unsorted CPU index is sorted once and its view cached with its
    grouping (:func:`message_grouping`'s table), so that the aggregations
    that need grouped messages (trees, recurrent cells, top-m) sort a graph
    once, not on every call.

    ``num_messages``, when given, must match ``index`` (one entry per
    message) or ``ptr[-1]``; an index past ``num_segments`` raises
    ``IndexError``, which PyG's ``Aggregation`` turns into its "invalid
    'dim_size'" error."""
    if torch.compiler.is_compiling():  # no host syncs in a traced graph
        if ptr is not None:
            count = ptr.numel() - 1 if num_messages is None else num_messages
            ids = torch.arange(count, device=ptr.device)
            return CSRGraph(ptr, ids, ids, count, ptr.numel() - 1)
        return _messages_csr(check_index(index, num_messages), num_segments)
    if ptr is not None:
        total = int(ptr[-1]) if ptr.dim() == 1 and ptr.numel() else 0
        if ptr.dim() != 1 or ptr.numel() == 0 or (
                num_messages is not None and total != num_messages):
            raise ValueError(f"ptr must be a 1-D tensor of segment offsets "
                             f"ending at the number of messages "
                             f"({num_messages}), got shape "
                             f"{tuple(ptr.shape)} ending at {total}")
        if int(ptr[0]) != 0 or bool((ptr.diff() < 0).any()):
            raise ValueError("ptr must be non-decreasing segment offsets "
                             f"from 0, got {ptr.tolist()[:8]}...")
        ids = torch.arange(total, device=ptr.device)
        return CSRGraph(ptr, ids, ids, ids.numel(), ptr.numel() - 1)
    index = check_index(index, num_messages)
    entry, seen = _grouping_entry(index, num_segments)
    if seen and entry is not None and entry.csr is not None:
        return entry.csr  # the same values, checked when it was built
    check_index_range(index, num_segments)
    grouping = None if entry is None else entry.grouping
    csr = outside_inference_mode(
        lambda: _messages_csr(index, num_segments, grouping))
    if entry is not None:
        entry.csr = csr
    return csr


def _messages_csr(index: Tensor, num_segments: int,
                  grouping: Optional[Tuple[Tensor, Tensor]] = None
                  ) -> CSRGraph:
    """The CSR view of :func:`csr_from_index` for an unsorted ``index``,
    from the index's cached :func:`message_grouping` where there is one
    (no second sort), else sorted."""
    if grouping is not None:
        rowptr, perm = grouping[0].long(), grouping[1].long()
    else:
        perm = torch.argsort(index, stable=True)
        rowptr = cumsum(_counts(index, num_segments))
    return CSRGraph(rowptr, perm, perm, index.numel(), num_segments)


def check_index(index: Optional[Tensor],
                num_messages: Optional[int] = None) -> Tensor:
    """``index`` as a long tensor after checking that it is a 1-D integer
    tensor with one entry per message (no host sync); ``ValueError``
    otherwise."""
    if index is None:
        raise ValueError("an aggregation needs the destination index of "
                         "every message (or a ptr of sorted segments)")
    if index.dim() != 1 or index.dtype not in (torch.long, torch.int32):
        raise ValueError("index must be a 1-D integer tensor, got shape "
                         f"{tuple(index.shape)} and dtype {index.dtype}")
    if num_messages is not None and index.numel() != num_messages:
        raise ValueError(f"index has {index.numel()} entries, but there are "
                         f"{num_messages} messages (one entry each)")
    return index.long()


def check_index_range(index: Tensor, num_segments: int) -> None:
    """``ValueError`` for a negative entry of ``index``, ``IndexError`` (PyG's
    ``Aggregation`` makes it its "invalid 'dim_size'" error) for one past
    ``num_segments``. One host sync."""
    if index.numel():
        lo, hi = torch.aminmax(index)
        if int(lo) < 0:
            raise ValueError(f"index holds a negative value ({int(lo)})")
        if int(hi) >= num_segments:
            raise IndexError(f"index holds {int(hi)}, outside [0, "
                             f"{num_segments})")

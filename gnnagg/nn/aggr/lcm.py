r"""Learnable commutative monoid aggregation (Ong and Velickovic, 2022) and
the recurrent baseline it is compared with."""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import GRU, LSTM, GRUCell, Module, Parameter
from torch_geometric.nn import aggr as pyg_aggr
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset

from ...ops import CSRGraph, segment_tree_reduce
from .base import SegmentAggregation


def _mean_of_both_orders(both: Tensor) -> Tensor:
    """The mean of ``op(a, b)`` and ``op(b, a)``, given both stacked
    (``(2P, F)``). Sizes spelled out: inferring one (-1) divides by ``P``,
    which a compiled tree level without pairs makes 0."""
    pairs = both.size(0) // 2
    return both.view(2, pairs, both.size(1)).mean(0)


def _positions(csr: CSRGraph) -> Tensor:
    """Each message's position within its neighbourhood (CSR order)."""
    if not csr.num_edges:
        return csr.rowptr.new_zeros(0)
    return torch.arange(csr.num_edges, device=csr.rowptr.device) - \
        csr.rowptr[csr.row]


def _gru_step(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Optional[Tensor], bias_hh: Optional[Tensor]
              ) -> Tensor:
    r"""One GRU cell step, ``torch.gru_cell``. Under ``torch.compile`` the
    maths is spelled out, :math:`r, z = \sigma(W_{ir,iz} x + W_{hr,hz} h +
    b)`, :math:`n = \tanh(W_{in} x + b_{in} + r (W_{hn} h + b_{hn}))`,
    :math:`h' = n + z (h - n)`: CUDA's fused GRU cell kernel has no
    implementation the compiler can trace."""
    if torch.jit.is_scripting() or not torch.compiler.is_compiling():
        return torch.gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    input_r, input_z, input_n = torch.nn.functional.linear(
        x, weight_ih, bias_ih).chunk(3, 1)
    hidden_r, hidden_z, hidden_n = torch.nn.functional.linear(
        h, weight_hh, bias_hh).chunk(3, 1)
    reset_gate = torch.sigmoid(input_r + hidden_r)
    update_gate = torch.sigmoid(input_z + hidden_z)
    candidate = torch.tanh(input_n + reset_gate * hidden_n)
    return candidate + update_gate * (h - candidate)


def _lstm_step(x: Tensor, h: Tensor, c: Tensor, weight_ih: Tensor,
               weight_hh: Tensor, bias_ih: Optional[Tensor],
               bias_hh: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    r"""One LSTM cell step, ``torch.lstm_cell``; under ``torch.compile``
    spelled out (as :func:`_gru_step`): :math:`i, f, o = \sigma(\cdot)`,
    :math:`g = \tanh(\cdot)` of :math:`W_i x + W_h h + b`, :math:`c' = f c
    + i g`, :math:`h' = o \tanh(c')`."""
    if torch.jit.is_scripting() or not torch.compiler.is_compiling():
        h, c = torch.lstm_cell(x, (h, c), weight_ih, weight_hh, bias_ih,
                               bias_hh)
        return h, c
    gates = torch.nn.functional.linear(x, weight_ih, bias_ih) + \
        torch.nn.functional.linear(h, weight_hh, bias_hh)
    input_gate, forget_gate, cell_gate, output_gate = gates.chunk(4, 1)
    c = torch.sigmoid(forget_gate) * c + \
        torch.sigmoid(input_gate) * torch.tanh(cell_gate)
    return torch.sigmoid(output_gate) * torch.tanh(c), c


class SymmetricMLP(Module):
    r""":math:`a \oplus b = \tfrac12\big(f([a \Vert b]) + f([b \Vert
    a])\big)` with :math:`f` a two-layer ReLU MLP: the paper's other
    symmetrised operator form."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            Linear(2 * channels, channels), torch.nn.ReLU(),
            Linear(channels, channels))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return _mean_of_both_orders(self.mlp(torch.cat([
            torch.cat([a, b], -1), torch.cat([b, a], -1)])))


class LCMAggregation(SegmentAggregation, pyg_aggr.LCMAggregation):
    r"""The learnable commutative monoid aggregation of `"Learnable
    Commutative Monoids for Graph Neural Networks"
    <https://arxiv.org/abs/2212.08541>`_ (Ong and Velickovic, 2022): each
    neighbourhood is reduced with a learned binary operator :math:`\oplus`
    over a balanced binary tree (:func:`gnnagg.ops.segment_tree_reduce`):

    .. math::
        \mathbf{out}_i = \bigoplus_{j \in \mathcal{N}(i)}
        \mathrm{ReLU}(\mathbf{W} \mathbf{x}_j + \mathbf{b}),
        \qquad a \oplus b = \tfrac12\big(\mathrm{GRU}(a, b) +
        \mathrm{GRU}(b, a)\big)

    (GRU cell: input first, hidden state second). :math:`O(\log d)`
    sequential depth instead of a recurrent aggregator's :math:`O(d)`;
    :math:`d - 1` operator calls for a node of degree :math:`d`;
    :math:`O(EF)` memory.

    Deliberate difference from PyG's ``LCMAggregation``, which pads every
    neighbourhood with zeros to the largest degree and feeds the zeros
    through the operator: gnnagg reduces only the real messages, and nodes
    without messages get a learned identity :math:`\mathbf{e}`
    (``identity``). Parameter names (``lin``, ``gru_cell``) and ``repr``
    are PyG's, so a PyG state dict loads (its missing ``identity`` is set
    to 0, PyG's padding value); outputs differ wherever PyG pads. The
    operator is commutative and only approximately associative, so the
    result depends on the order of messages within a neighbourhood.

    Args:
        in_channels (int): message size.
        out_channels (int): output size.
        project (bool, optional): apply :math:`\mathrm{ReLU}(\mathbf{W}\cdot
            + \mathbf{b})` first (required when the sizes differ).
            (default: ``True``)
        operator (str or Module, optional): ``"gru"`` (the symmetrised GRU
            cell above), ``"mlp"`` (:class:`SymmetricMLP`), or any module
            mapping two ``(P, out_channels)`` tensors to one.
            (default: ``"gru"``)
        checkpoint (bool, optional): recompute the operator in backward
            instead of keeping its intermediates (about 1.35x the time, a
            fraction of the memory); ``None`` turns it on when the messages
            hold more than :attr:`CHECKPOINT_ABOVE` values.
            (default: ``None``)

    Shapes:
        - **input:** messages :math:`(E, F_{in})`, destination index
          :math:`(E)`
        - **output:** :math:`(N, F_{out})`

    Example::

        >>> from torch_geometric.nn import SAGEConv
        >>> conv = SAGEConv(16, 32, aggr=LCMAggregation(16, 16))
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    #: message values (``E x out_channels``) above which ``checkpoint=None``
    #: checkpoints the operator.
    CHECKPOINT_ABOVE = 1 << 26
    #: operator pairs per checkpointed call.
    CHECKPOINT_PAIRS = 1 << 16
    __constants__ = SegmentAggregation.__constants__ + [
        "CHECKPOINT_ABOVE", "CHECKPOINT_PAIRS"]

    def __init__(self, in_channels: int, out_channels: int,
                 project: bool = True,
                 operator: Union[str, Module] = "gru",
                 checkpoint: Optional[bool] = None,
                 associativity_samples: int = 0):
        Aggregation.__init__(self)
        if isinstance(associativity_samples, bool) or not isinstance(
                associativity_samples, int) or associativity_samples < 0:
            raise ValueError(f"associativity_samples must be a non-negative "
                             f"integer, got {associativity_samples!r}")
        self.associativity_samples = associativity_samples
        #: the associativity penalty of the last training call (a scalar
        #: tensor), or ``None``
        self.associativity_loss: Optional[Tensor] = None
        if in_channels != out_channels and not project:
            raise ValueError(f"Inputs of '{self.__class__.__name__}' must be "
                             f"projected if `in_channels != out_channels`")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.project = project
        self.checkpoint = checkpoint
        self.lin = Linear(in_channels, out_channels) if project else None
        self.gru_cell: Optional[GRUCell] = None
        self.operator: Optional[Module] = None
        if operator == "gru":
            self.gru_cell = GRUCell(out_channels, out_channels)
        elif operator == "mlp":
            self.operator = SymmetricMLP(out_channels)
        elif isinstance(operator, Module):
            self.operator = operator
        else:
            raise ValueError(f"unknown operator {operator!r}; choose 'gru', "
                             "'mlp' or pass a Module")
        self.identity = Parameter(torch.empty(out_channels))
        self._register_load_state_dict_pre_hook(self._identity_default)
        self.reset_parameters()

    def reset_parameters(self):
        if self.lin is not None:
            self.lin.reset_parameters()
        reset(self.gru_cell if self.operator is None else self.operator)
        torch.nn.init.zeros_(self.identity)

    def _identity_default(self, state_dict, prefix, *args) -> None:
        """A PyG state dict has no ``identity``: use PyG's padding, 0."""
        state_dict.setdefault(prefix + "identity",
                              torch.zeros_like(self.identity))

    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        r""":math:`a \oplus b` for two ``(P, out_channels)`` batches."""
        if self.operator is not None:
            return self.operator(a, b)
        assert self.gru_cell is not None  # one of the two is set
        cell = self.gru_cell
        both_orders = (torch.cat([a, b]), torch.cat([b, a]))
        if not torch.jit.is_scripting() and torch.compiler.is_compiling():
            return _mean_of_both_orders(_gru_step(
                *both_orders, cell.weight_ih, cell.weight_hh, cell.bias_ih,
                cell.bias_hh))
        # the module itself, so that hooks on it run as with PyG's
        return _mean_of_both_orders(cell(*both_orders))

    def associativity_penalty(self, x: Tensor, samples: int) -> Tensor:
        r"""Mean of :math:`\lVert (a \oplus b) \oplus c - a \oplus
        (b \oplus c) \rVert^2` over ``samples`` triples of rows of ``x``
        drawn uniformly (with replacement)."""
        a, b, c = x[torch.randint(x.size(0), (3, samples), device=x.device)]
        left = self.combine(self.combine(a, b), c)
        right = self.combine(a, self.combine(b, c))
        return (left - right).pow(2).sum(-1).mean()

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, max_num_elements: Optional[int] = None
                ) -> Tensor:
        r"""As PyG's; ``max_num_elements`` is accepted and unused (nothing
        is padded)."""
        # named, not super(): under torch.jit.script self is the script module
        return SegmentAggregation.forward(self, x, index, ptr, dim_size, dim)

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"expected messages of shape (E, "
                             f"{self.in_channels}), got {tuple(x.shape)}")
        if self.lin is not None:
            x = self.lin(x).relu()
        self.associativity_loss = None
        if self.training and self.associativity_samples and x.size(0):
            self.associativity_loss = self.associativity_penalty(
                x, self.associativity_samples)
        checkpoint = (x.numel() > self.CHECKPOINT_ABOVE
                      if self.checkpoint is None else self.checkpoint)
        return segment_tree_reduce(
            x, csr.rowptr, self.combine, self.identity,
            self.CHECKPOINT_PAIRS if checkpoint else None)

    def __repr__(self) -> str:
        operator = ("" if self.operator is None else
                    f", operator={type(self.operator).__name__}")
        if self.associativity_samples:
            operator += (f", associativity_samples="
                         f"{self.associativity_samples}")
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, project={self.project}{operator})")


class RecurrentAggregation(SegmentAggregation):
    r"""The recurrent baseline: a GRU or LSTM reads each neighbourhood in a
    random order (a new one every training pass; edge order in eval) and
    returns its last hidden state. All neighbourhoods advance together, one
    cell call per step: :math:`\max_i d_i` steps, the longest
    neighbourhoods first in every step's batch (packed, not padded).
    Forward and backward are linear in the number of messages, whatever the
    degree (PyTorch's own GRU/LSTM backward grows with the square of the
    sequence length). Parameters are those of a one-layer ``torch.nn.GRU``
    or ``LSTM`` (``rnn``). Nodes without neighbours get 0."""

    def __init__(self, in_channels: int, out_channels: int,
                 cell: str = "gru"):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.in_channels, self.out_channels, self.cell = (
            in_channels, out_channels, cell)
        self.rnn = (GRU if cell == "gru" else LSTM)(in_channels, out_channels)

    def reset_parameters(self):
        self.rnn.reset_parameters()

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        return self._read_neighbourhoods(x, csr,
                                         *self._steps_and_weights(csr))

    def reduce_unsorted_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        # the step sizes are fetched here rather than through
        # reduce_segments: torch.compile counts their graph break once per
        # frame on the call stack
        return self._read_neighbourhoods(x.index_select(0, csr.perm), csr,
                                         *self._steps_and_weights(csr))

    def _read_neighbourhoods(self, x: Tensor, csr: CSRGraph,
                             batch_sizes: List[int],
                             weights: List[Tensor]) -> Tensor:
        """The last hidden state of every neighbourhood of ``x`` (messages
        in CSR order), ``batch_sizes[t]`` of them still running at step
        ``t``."""
        lengths = csr.degree
        segment = csr.row if csr.num_edges else lengths.new_zeros(0)
        if self.training:  # a random order within every neighbourhood
            keys = torch.rand(csr.num_edges, device=x.device)
            order = torch.argsort(keys)
            order = order[torch.argsort(segment[order], stable=True)]
            x = x.index_select(0, order)
        # longest first; empty neighbourhoods sort last and are never read
        by_length = torch.argsort(lengths, descending=True, stable=True)
        rank = torch.empty_like(lengths)
        rank[by_length] = torch.arange(by_length.numel(), device=x.device)
        time_major = torch.argsort(
            _positions(csr) * max(1, by_length.numel()) + rank[segment])
        out = x.new_zeros(csr.num_dst, self.out_channels)
        if not batch_sizes:  # no messages
            return out
        last = self._run(x.index_select(0, time_major), batch_sizes, weights)
        return out.index_put((by_length[:batch_sizes[0]],), last)

    @torch.compiler.disable
    def _steps_and_weights(self, csr: CSRGraph
                           ) -> Tuple[List[int], List[Tensor]]:
        """Sequences still running at each step (messages at each
        position), as Python ints because the cell's loop runs once per
        step, and the RNN's weights. Run outside ``torch.compile``'s graph
        (one graph break): the number of steps, the longest neighbourhood,
        is data, and dynamo does not look into GRU and LSTM modules."""
        weights = [getattr(self.rnn, name) for name in (
            "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
        return torch.bincount(_positions(csr)).tolist(), weights

    def _run(self, packed: Tensor, batch_sizes: List[int],
             weights: List[Tensor]) -> Tensor:
        """The cell over time-major ``packed`` inputs (step ``t`` holds the
        ``batch_sizes[t]`` longest sequences, longest first); the last
        hidden state of every sequence, longest first. The input is split
        once (its backward is one concatenation) and finished sequences are
        split off, so no step's backward touches more than its own rows."""
        h = packed.new_zeros(batch_sizes[0], self.out_channels)
        c = h if self.cell == "lstm" else None
        finished = []
        for step, size in zip(packed.split(batch_sizes), batch_sizes):
            if size < h.size(0):
                h, done = h.split([size, h.size(0) - size])
                finished.append(done)
                if c is not None:
                    c = c[:size]
            if c is None:
                h = _gru_step(step, h, *weights)
            else:
                h, c = _lstm_step(step, h, c, *weights)
        finished.append(h)
        return torch.cat(finished[::-1])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, cell={self.cell})")

r"""Top-m attention over the messages (TANGNN's selection, per node)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from ...ops import CSRGraph, message_attention, segment_topm
from .base import SegmentAggregation


class TopMAttentionAggregation(SegmentAggregation):
    r"""The top-m attention of `TANGNN <https://arxiv.org/abs/2411.15458>`_
    (E et al., 2024) over each node's messages: keeps the ``m`` messages
    most similar to a learned auxiliary vector and sums them with softmax
    weights:

    .. math::
        s_{j,h} = \cos(\mathbf{x}_j, \mathbf{a}_h), \qquad
        \mathbf{out}_{i,h} = \sum_{j \in \mathrm{top}_m(i, h)}
        \frac{\exp(t_h s_{j,h})}{\sum_{k \in \mathrm{top}_m(i, h)}
        \exp(t_h s_{k,h})} \mathbf{x}_j

    (:func:`gnnagg.ops.segment_topm` selects, no padding to the largest
    neighbourhood; :func:`gnnagg.ops.message_attention` scores, weighs and
    sums in one operator, so no ``E x heads x F`` tensor is formed forward
    or backward, and backward allocates one ``E x F`` tensor, the messages'
    gradient). Gradients reach :math:`\mathbf{a}_h`, :math:`t_h` and the
    kept messages. With ``m`` at least the largest degree it is softmax
    attention over all neighbours. Heads are averaged (``concat=False``) or
    concatenated. Nodes without messages get 0.

    Args:
        in_channels (int): message size.
        m (int): messages kept per node.
        heads (int, optional): independent auxiliary vectors.
            (default: :obj:`1`)
        t (float, optional): initial inverse temperature :math:`t_h`
            (learned). (default: :obj:`1.0`)
        concat (bool, optional): concatenate heads instead of averaging
            them. (default: :obj:`False`)

    Shapes:
        - **input:** messages :math:`(|\mathcal{E}|, F)`, ``index``
          :math:`(|\mathcal{E}|)` (or ``ptr``)
        - **output:** :math:`(N, F)`, or :math:`(N, H F)` with ``concat``

    Example::

        >>> from torch_geometric.nn import SAGEConv
        >>> conv = SAGEConv(16, 32, aggr=TopMAttentionAggregation(16, m=4))
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    def __init__(self, in_channels: int, m: int, heads: int = 1,
                 t: float = 1.0, concat: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("m", m),
                            ("heads", heads)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if m < 1 or heads < 1:
            raise ValueError(f"m and heads must be positive, got m={m}, "
                             f"heads={heads}")
        self.in_channels, self.m, self.heads = in_channels, m, heads
        self.concat, self._init_t = concat, t
        self.aux = Parameter(torch.empty(heads, in_channels))
        self.t = Parameter(torch.empty(heads))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.uniform_(self.aux, -1 / math.sqrt(self.in_channels),
                               1 / math.sqrt(self.in_channels))
        self.t.data.fill_(self._init_t)

    def scores(self, x: Tensor) -> Tensor:
        """Cosine similarity of every message to every head's auxiliary
        vector, ``(E, H)``: the products divided by the message norms (as
        ``F.normalize``, norms below 1e-12 count as 1e-12), with no
        normalised copy of the messages."""
        dots = x @ F.normalize(self.aux, dim=-1).t()
        return dots / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        return self._attend(x, csr, None)

    def reduce_unsorted_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        """Unsorted messages are read in place (no permuted copy)."""
        return self._attend(x, csr, csr.perm)

    def _attend(self, x: Tensor, csr: CSRGraph,
                col: Optional[Tensor]) -> Tensor:
        """The aggregation of messages ``x`` in slot order, or in any order
        with ``col[e]`` the message of slot ``e``."""
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"expected messages of shape (E, "
                             f"{self.in_channels}), got {tuple(x.shape)}")
        keep = None
        # with no neighbourhood longer than m every message is kept (a host
        # sync: not while compiling)
        if torch.compiler.is_compiling() or csr.max_degree > self.m:
            with torch.no_grad():
                scores = self.scores(x)
                if col is not None:
                    scores = scores.index_select(0, col)
                keep = segment_topm(scores, csr.rowptr, self.m)
        out = message_attention(x, F.normalize(self.aux, dim=-1), self.t,
                                csr.rowptr, csr.row, keep, col)
        return out.flatten(1) if self.concat else out.mean(1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, m={self.m}, "
                f"heads={self.heads})")

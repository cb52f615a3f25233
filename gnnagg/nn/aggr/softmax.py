r"""Softmax attention over the messages with a (learnable) temperature."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Parameter

from ...ops import CSRGraph, segment_reduce, segment_softmax
from .base import SegmentAggregation


class SoftmaxAggregation(SegmentAggregation):
    r"""Feature-wise softmax attention (DeeperGCN):

    .. math::
        \mathbf{out}_i = \sum_{j} \frac{\exp(t\,\mathbf{x}_j)}{\sum_k
        \exp(t\,\mathbf{x}_k)} \odot \mathbf{x}_j

    Args:
        t: initial inverse temperature.
        learn: learn :math:`t`.
        channels: learn one :math:`t` per feature channel (with ``learn``).
    """

    def __init__(self, t: float = 1.0, learn: bool = False,
                 channels: int = 1):
        super().__init__()
        if not learn and channels != 1:
            raise ValueError("channels > 1 needs learn=True")
        self._init_t = t
        self.learn = learn
        self.channels = channels
        self.t = Parameter(torch.empty(channels)) if learn else t
        self.reset_parameters()

    def reset_parameters(self):
        if isinstance(self.t, Tensor):
            self.t.data.fill_(self._init_t)

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        alpha = segment_softmax(x * self.t, csr)
        return segment_reduce(x * alpha, csr.rowptr, "sum")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(learn={self.learn})"

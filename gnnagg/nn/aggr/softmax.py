r"""Softmax attention over the messages with a (learnable) temperature."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import aggr as pyg_aggr

from ...ops import CSRGraph, segment_reduce, segment_softmax
from .base import SegmentAggregation


class SoftmaxAggregation(SegmentAggregation, pyg_aggr.SoftmaxAggregation):
    r"""Feature-wise softmax attention (DeeperGCN, Li et al., 2020):

    .. math::
        \mathbf{out}_i = \sum_{j} \frac{\exp(t\,\mathbf{x}_j)}{\sum_k
        \exp(t\,\mathbf{x}_k)} \odot \mathbf{x}_j

    on gnnagg's segment softmax (one grouping, no scatter).

    Args:
        t (float, optional): initial inverse temperature. (default: ``1.0``)
        learn (bool, optional): learn :math:`t`. (default: ``False``)
        semi_grad (bool, optional): no gradient through the softmax weights
            (only with a fixed :math:`t`). (default: ``False``)
        channels (int, optional): learn one :math:`t` per feature channel
            (with ``learn``). (default: ``1``)

    Shapes:
        - **input:** messages :math:`(E, F)`, destination index :math:`(E)`
        - **output:** :math:`(N, F)`
    """

    def reduce_segments(self, x: Tensor, csr: CSRGraph) -> Tensor:
        t = self.t
        if self.channels != 1:
            assert isinstance(t, Tensor)
            t = t.view(-1, self.channels)
        logits = x if isinstance(t, (int, float)) and t == 1 else x * t
        if self.semi_grad and not self.learn:
            with torch.no_grad():
                alpha = segment_softmax(logits, csr.rowptr, csr.row)
        else:
            alpha = segment_softmax(logits, csr.rowptr, csr.row)
        return segment_reduce(x * alpha, csr.rowptr, "sum")

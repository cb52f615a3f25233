r"""Softmax attention over the messages with a (learnable) temperature."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn import aggr as pyg_aggr

from ...ops import message_softmax, reduce_messages
from .base import SegmentAggregation


class SoftmaxAggregation(SegmentAggregation, pyg_aggr.SoftmaxAggregation):
    r"""Feature-wise softmax attention of `"DeeperGCN: All You Need to Train
    Deeper GCNs" <https://arxiv.org/abs/2006.07739>`_ (Li et al., 2020):

    .. math::
        \mathbf{out}_i = \sum_{j} \frac{\exp(t\,\mathbf{x}_j)}{\sum_k
        \exp(t\,\mathbf{x}_k)} \odot \mathbf{x}_j

    on gnnagg's softmax and reduction operators.

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

    Example::

        >>> from torch_geometric.nn import SAGEConv
        >>> conv = SAGEConv(16, 32, aggr=SoftmaxAggregation(learn=True))
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    reduces_by_index = True

    def reduce_messages(self, x: Tensor, index: Tensor, num_segments: int,
                        rowptr: Optional[Tensor] = None) -> Tensor:
        if not x.is_floating_point():  # integer messages: as PyG, in floats
            x = x.to(torch.get_default_dtype())
        t = self.t
        if self.channels != 1:
            assert isinstance(t, Tensor)
            t = t.view(-1, self.channels)
        logits = x if isinstance(t, (int, float)) and t == 1 else x * t
        with torch.set_grad_enabled(torch.is_grad_enabled() and not (
                self.semi_grad and not self.learn)):
            alpha = message_softmax(logits, index, num_segments, rowptr)
        return reduce_messages(x * alpha, index, num_segments, "sum", rowptr)

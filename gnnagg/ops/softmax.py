r"""Numerically stable softmax over the incoming edges of every node."""
from __future__ import annotations

import torch
from torch import Tensor

from .backend import native_segment_reduce as segment_reduce


class _SegmentSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, rowptr: Tensor, row: Tensor) -> Tensor:
        row_max = segment_reduce(logits, rowptr, "max")
        out = logits - row_max.index_select(0, row)
        out.exp_()
        out.div_(segment_reduce(out, rowptr, "sum").index_select(0, row))
        ctx.save_for_backward(out, rowptr, row)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        out, rowptr, row = ctx.saved_tensors
        weighted = grad_out * out
        row_sum = segment_reduce(weighted, rowptr, "sum").index_select(0, row)
        return weighted.sub_(out * row_sum), None, None


def segment_softmax(logits: Tensor, rowptr: Tensor, row: Tensor) -> Tensor:
    r"""Softmax of per-edge ``logits`` (CSR order, shape ``(E, ...)``) over
    the incoming edges of each destination node, given the CSR row pointer
    ``rowptr`` and the destination ``row`` of every edge:

    .. math::
        \alpha_{ij} = \frac{\exp(e_{ij} - m_i)}{\sum_{k \in \mathcal{N}(i)}
        \exp(e_{ik} - m_i)}, \qquad m_i = \max_{k \in \mathcal{N}(i)} e_{ik}

    Subtracting the row maximum keeps it finite for logits of any size;
    nodes without incoming edges own no entries. Backward keeps only the
    output (:math:`\partial e = \alpha \odot (g - \sum_k \alpha_k g_k)`).
    """
    if logits.size(0) != row.numel():
        raise ValueError(f"expected {row.numel()} logits (one per edge), "
                         f"got {logits.size(0)}")
    if logits.numel() == 0:
        return logits.clone()
    return _SegmentSoftmax.apply(logits, rowptr, row)

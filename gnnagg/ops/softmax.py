r"""Numerically stable softmax over the incoming edges of every node, as the
custom operator ``torch.ops.gnnagg.softmax``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .library import call_operator, eager_function
from .segment import reduce_messages


def _softmax(logits: Tensor, index: Tensor, rowptr: Optional[Tensor],
             num_segments: int) -> Tensor:
    row_max = reduce_messages(logits, index, num_segments, "max", rowptr)
    out = logits - row_max.index_select(0, index)
    out.exp_()
    total = reduce_messages(out, index, num_segments, "sum", rowptr)
    return out.div_(total.index_select(0, index))


def _softmax_kernel(logits: Tensor, index: Tensor, rowptr: Optional[Tensor],
                    num_segments: int) -> Tensor:
    if logits.numel() == 0:
        return logits.clone()
    return _softmax(logits, index, rowptr, num_segments)


_softmax_op = torch.library.custom_op("gnnagg::softmax", _softmax_kernel,
                                      mutates_args=())


@_softmax_op.register_fake
def _softmax_fake(logits, index, rowptr, num_segments):
    return torch.empty_like(logits)


def _setup(ctx, inputs, output):
    _, index, rowptr, num_segments = inputs
    ctx.num_segments = num_segments
    ctx.save_for_backward(output, index, rowptr)


def _backward(ctx, grad_out):
    out, index, rowptr = ctx.saved_tensors
    weighted = grad_out * out
    total = reduce_messages(weighted, index, ctx.num_segments, "sum", rowptr)
    return (weighted.sub_(out * total.index_select(0, index)), None, None,
            None)


_softmax_op.register_autograd(_backward, setup_context=_setup)
#: ``gnnagg::softmax`` past the dispatcher
_SoftmaxFunction = eager_function("_SoftmaxFunction", _softmax_kernel,
                                  _setup, _backward)


def message_softmax(logits: Tensor, index: Tensor, num_segments: int,
                    rowptr: Optional[Tensor] = None) -> Tensor:
    r"""Softmax of per-message ``logits`` (shape ``(E, ...)``) over the
    messages of each destination ``index``; with ``rowptr`` the messages
    are sorted by destination (``index`` is then the CSR ``row``):

    .. math::
        \alpha_{ij} = \frac{\exp(e_{ij} - m_i)}{\sum_{k \in \mathcal{N}(i)}
        \exp(e_{ik} - m_i)}, \qquad m_i = \max_{k \in \mathcal{N}(i)} e_{ik}

    Subtracting the row maximum keeps it finite for logits of any size.
    Backward keeps only the output (:math:`\partial e = \alpha \odot (g -
    \sum_k \alpha_k g_k)`).
    """
    if logits.size(0) != index.numel():
        raise ValueError(f"expected {index.numel()} logits (one per edge), "
                         f"got {logits.size(0)}")
    return call_operator(_softmax_op, _SoftmaxFunction, logits, index,
                         rowptr, num_segments)


def segment_softmax(logits: Tensor, rowptr: Tensor, row: Tensor) -> Tensor:
    r""":func:`message_softmax` of logits in CSR order, given the row pointer
    ``rowptr`` and the destination ``row`` of every edge."""
    return message_softmax(logits, row, rowptr.numel() - 1, rowptr)

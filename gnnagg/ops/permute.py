"""Row permutations whose backward is the inverse permutation, as the
custom operator ``gnnagg::permute_rows`` (every device has
``index_select``)."""
from __future__ import annotations

import torch
from torch import Tensor

from .library import call_operator, eager_function


def _gather_rows(x: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
    return x.index_select(0, order)


_permute_rows = torch.library.custom_op("gnnagg::permute_rows",
                                        _gather_rows, mutates_args=())


@_permute_rows.register_fake
def _(x: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
    return x.new_empty((order.numel(),) + tuple(x.shape[1:]))


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[1], inputs[2])


def _backward(ctx, grad: Tensor):
    order, inverse = ctx.saved_tensors
    # the inverse permutation, itself differentiable (double backward)
    return permute_rows(grad, inverse, order), None, None


_permute_rows.register_autograd(_backward, setup_context=_setup)
#: ``gnnagg::permute_rows`` past the dispatcher
_PermuteRowsFunction = eager_function("_PermuteRowsFunction", _gather_rows,
                                      _setup, _backward)


def permute_rows(x: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
    r"""``x[order]`` for a permutation ``order`` with ``inverse[order[i]] =
    i``. Its gradient is ``grad[inverse]``, a gather, where autograd's
    ``index_select`` backward fills zeros and scatter-adds. Eager CPU
    calls run past the dispatcher (:func:`~gnnagg.ops.library.dispatch_free`)."""
    return call_operator(_permute_rows, _PermuteRowsFunction, x, order,
                         inverse)

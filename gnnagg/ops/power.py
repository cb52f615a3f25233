r"""The clamped power of the power-mean aggregation, as a custom operator.

.. math::
    y = \mathrm{clamp}(x, a, b)^{p}, \qquad
    \frac{\partial y}{\partial x} = [a \le x \le b]\,\frac{p\,y}{\hat x},
    \qquad
    \frac{\partial y}{\partial p} = y \log \hat x,
    \qquad \hat x = \mathrm{clamp}(x, a, b) \ge a > 0

The backward reuses :math:`y` (no second power) and finds the unclamped
entries as :math:`\hat x = x` (no range tests): about half the time of
autograd's clamp and power on the messages. Its implementation is made of
elementwise operators that exist on every device.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor


@torch.library.custom_op("gnnagg::clamped_power", mutates_args=())
def _clamped_power(x: Tensor, p: Tensor, low: float,
                   high: Optional[float]) -> Tensor:
    return x.clamp(low, high).pow(p)


@_clamped_power.register_fake
def _clamped_power_fake(x, p, low, high):
    return x.new_empty(torch.broadcast_shapes(x.shape, p.shape),
                       dtype=torch.result_type(x, p))


def _setup(ctx, inputs, output):
    x, p, low, high = inputs
    ctx.low, ctx.high = low, high
    ctx.save_for_backward(x, p, output)


def _backward(ctx, grad):
    x, p, y = ctx.saved_tensors
    clamped = x.clamp(ctx.low, ctx.high)
    grad_y = grad * y
    grad_p = None
    if ctx.needs_input_grad[1]:
        grad_p = (grad_y * clamped.log()).sum_to_size(p.shape).to(p.dtype)
    grad_x = None
    if ctx.needs_input_grad[0]:
        # 1 where the clamp let x through, compared into floats (several
        # times faster than into bools); a mask, without a gradient
        unclamped = torch.eq(clamped.detach(), x.detach(),
                             out=torch.empty_like(clamped.detach()))
        grad_x = (grad_y / clamped).mul_(p).mul_(unclamped).to(x.dtype)
    return grad_x, grad_p, None, None


_clamped_power.register_autograd(_backward, setup_context=_setup)


def clamped_power(x: Tensor, p: Union[float, Tensor], low: Optional[float],
                  high: Optional[float]) -> Tensor:
    r""":math:`\mathrm{clamp}(x, \mathrm{low}, \mathrm{high})^p`, ``p`` a
    number or a tensor broadcastable to ``x`` (a learned exponent gets its
    gradient). On the operator when ``low > 0`` (the power mean's default
    ``1e-4``); otherwise, where :math:`\hat x` may be 0, autograd's clamp
    and power."""
    if low is None or low <= 0:
        if low is not None or high is not None:
            x = x.clamp(low, high)
        return x.pow(p)
    if not isinstance(p, Tensor):
        p = torch.tensor(float(p), dtype=x.dtype, device=x.device)
    return _clamped_power(x, p, float(low),
                          None if high is None else float(high))

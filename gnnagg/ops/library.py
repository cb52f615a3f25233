"""What gnnagg's custom operators (``torch.ops.gnnagg.*``) share.

Every operator has a device-generic implementation, built only from
operators that exist on every device (``index_add``, ``scatter_reduce``,
``index_select``), registered as its default, and where it pays a faster CPU
one (``torch.segment_reduce``, ``torch.sparse`` products on the CSR view).
:func:`use_generic` makes the CPU run the generic implementations too: the
test suite checks that both agree, so a GPU runs code that has been run.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, List, Optional, Sequence, Type

import torch
from torch import Tensor

_state = {"generic": False}

#: how many times more work one chunk of a chunked kernel holds on a device
#: other than the CPU. The CPU's chunks are sized for its caches; on a GPU
#: each chunk is a few kernel launches, and on an H200 at ogbn-arxiv scale
#: the CPU-sized chunks of GATv2's and PNA's backward spent 2-3x more host
#: time launching than the device spent computing (torch.profiler)
DEVICE_CHUNK_FACTOR = 32


def chunk_length(cpu_length: int, device: torch.device) -> int:
    """A chunk's length on ``device``, given its length on the CPU."""
    return cpu_length if device.type == "cpu" else \
        cpu_length * DEVICE_CHUNK_FACTOR


def records_grad(tensor: Tensor) -> bool:
    """Whether autograd records the operations on ``tensor`` now (a
    backward pass will need what they save)."""
    return torch.is_grad_enabled() and tensor.requires_grad


def dispatch_free(tensor: Tensor) -> bool:
    """Whether an operator called on ``tensor`` may run its CPU kernel and
    backward as a plain ``torch.autograd.Function``, past the dispatcher:
    an eager call (not compiling, no ``__torch_function__`` or dispatch mode
    such as fake tensors active) on a plain CPU tensor, the CPU kernels not
    forced generic. Going through ``torch.library``'s machinery costs about
    150 us per forward and backward call, as much as a kernel on a batch of
    molecules; what it provides (device choice, fake tensors, compile) is
    not in use on such a call. Autocast is not checked here:
    :func:`call_operator` keeps an operator with an autocast registration
    on the dispatcher while autocast is on."""
    return (type(tensor) is Tensor and tensor.device.type == "cpu"
            and not generic_forced()
            and not torch.compiler.is_compiling()
            and not torch._C._is_torch_function_mode_enabled()
            and torch._C._len_torch_dispatch_stack() == 0)


class EagerFunction(torch.autograd.Function):
    """Base of the Functions :func:`eager_function` builds."""

    #: whether the operator has an autocast registration
    autocast: bool = False
    #: the same Function with a separate ``setup_context``, which
    #: ``torch.func`` transforms need
    transformable: Type[torch.autograd.Function]


def eager_function(name: str, kernel, setup_context, backward,
                   returns_list: bool = False, autocast: bool = False
                   ) -> Type[EagerFunction]:
    """The ``torch.autograd.Function`` called ``name`` that runs an
    operator's ``kernel``, ``setup_context`` and ``backward`` (the
    functions registered for it) on :func:`dispatch_free` calls. With
    ``returns_list`` (an operator returning ``List[Tensor]``) the Function
    returns a tuple, whose elements autograd tracks, and hands ``backward``
    their gradients as one list, as ``torch.library`` does. ``autocast``:
    the operator has an autocast registration (see :func:`call_operator`).

    The Function's ``forward`` takes ``ctx`` and runs ``setup_context``
    itself: a Function with a separate ``setup_context`` has ``apply`` bind
    its arguments with ``inspect.signature`` on every call (50 us, a
    tenth of a small graph's kernel). ``torch.func`` transforms need the
    separate form: the Function's ``transformable``."""
    def outputs(*inputs):
        output = kernel(*inputs)
        return tuple(output) if returns_list else output

    def forward(ctx, *inputs):
        output = outputs(*inputs)
        setup_context(ctx, inputs, output)
        return output

    backward_list = backward
    if returns_list:
        def backward_list(ctx, *grads):
            return backward(ctx, list(grads))

    transformable = type(name, (torch.autograd.Function,), {
        "forward": staticmethod(outputs),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward_list)})
    return type(name, (EagerFunction,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(backward_list),
        "autocast": autocast, "transformable": transformable})


def call_operator(operator, eager: Type[EagerFunction], *inputs):
    """``operator(*inputs)``, run as ``eager`` (the operator's
    :func:`eager_function`) where the call, judged by its first input, is
    :func:`dispatch_free`; an operator with an autocast registration stays
    on the dispatcher while CPU autocast is on, which that registration
    handles."""
    if dispatch_free(inputs[0]) and not (
            eager.autocast and torch.is_autocast_enabled("cpu")):
        if torch._C._are_functorch_transforms_active():
            return eager.transformable.apply(*inputs)
        return eager.apply(*inputs)
    return operator(*inputs)


def backward_kernel(kernel, operator, grad: Tensor):
    """What a backward pass calls to compute its gradients: the backward
    ``kernel`` itself on a :func:`dispatch_free` call, else its
    ``operator``. (A backward pass that is itself recorded takes
    :func:`recorded_gradients` instead.)"""
    return kernel if dispatch_free(grad) else operator


def recorded_gradients(composite: Callable[..., Tensor],
                       inputs: Sequence[Optional[Tensor]],
                       needs_grad: Sequence[bool],
                       grad: Tensor) -> List[Optional[Tensor]]:
    """The gradients of ``composite(*inputs)`` (an operator's forward
    written in PyTorch's differentiable operations) for the inputs with
    ``needs_grad``, given the output's gradient ``grad``, as a graph
    autograd can differentiate again. A backward pass runs this instead of
    its backward kernel when it is itself recorded
    (``torch.autograd.grad(..., create_graph=True)``: a double backward,
    a gradient penalty, forces from an energy), where the kernels, which
    have no autograd of their own, would stop the graph."""
    with torch.enable_grad():
        # fresh aliases: the partial derivatives of this operator alone,
        # even where one input also reaches the output through another
        # (GAT's x through its scores and its weighted sum)
        aliases = [t.view_as(t) if needed and t is not None else t
                   for t, needed in zip(inputs, needs_grad)]
        wanted = [a for a, needed in zip(aliases, needs_grad)
                  if needed and a is not None]
        grads = iter(torch.autograd.grad(composite(*aliases), wanted, grad,
                                         create_graph=True,
                                         allow_unused=True))
    return [next(grads) if needed and t is not None else None
            for t, needed in zip(inputs, needs_grad)]


def generic_forced() -> bool:
    """Whether CPU calls run the device-generic implementations."""
    return _state["generic"]


@contextmanager
def use_generic(enabled: bool = True):
    """Context manager: run the device-generic implementation of every
    gnnagg operator on the CPU as well (what a GPU runs)."""
    previous = _state["generic"]
    _state["generic"] = bool(enabled)
    try:
        yield
    finally:
        _state["generic"] = previous

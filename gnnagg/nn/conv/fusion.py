r"""When a gnnagg layer may take its fused CSR path instead of PyG's
message path (``message`` per edge, then ``aggregate``)."""
from __future__ import annotations

import copy

from torch import nn
from torch_geometric.inspector import Inspector
from torch_geometric.nn.conv import MessagePassing

#: MessagePassing hook registries whose hooks see individual messages or
#: edge scores: while any holds a hook, the layer runs PyG's message path.
MESSAGE_HOOKS = ("_message_forward_pre_hooks", "_message_forward_hooks",
                 "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks",
                 "_edge_update_forward_pre_hooks",
                 "_edge_update_forward_hooks")
#: hook registries of ``propagate`` itself
PROPAGATE_HOOKS = ("_propagate_forward_pre_hooks", "_propagate_forward_hooks")
#: hooks that see the fused product: ``propagate``'s and
#: ``message_and_aggregate``'s
FUSED_PRODUCT_HOOKS = PROPAGATE_HOOKS + (
    "_message_and_aggregate_forward_pre_hooks",
    "_message_and_aggregate_forward_hooks")


def has_hooks(conv: MessagePassing, hooks) -> bool:
    """Whether ``conv`` holds a hook in any of the registries ``hooks``."""
    return any(getattr(conv, name) for name in hooks)


def message_path_needed(conv: MessagePassing, hooks=MESSAGE_HOOKS) -> bool:
    r"""Whether ``conv`` must run PyG's message path instead of gnnagg's
    fused one: in explain mode (explainers mask individual messages), with
    ``decomposed_layers > 1``, with ``flow="target_to_source"``, or while
    a hook in ``hooks`` is registered."""
    return bool(conv.explain) or conv.decomposed_layers > 1 or \
        conv.flow != "source_to_target" or has_hooks(conv, hooks)


class FusedMessagePassing(MessagePassing):
    r"""Base of gnnagg's layers that derive from a PyG layer.

    PyG compiles ``propagate`` per class and keeps the class's
    ``_orig_propagate`` (the plain :meth:`MessagePassing.propagate`) for
    explain mode. Once PyG's own layer has been built, its compiled
    ``propagate`` is what a subclass inherits, and PyG would keep that as the
    subclass's "original", which skips the explain masks. This base keeps the
    plain one, whichever class was built first.

    ``torch.jit.script`` compiles the layer's :func:`pyg_twin`: TorchScript
    cannot compile the fused paths (their CSR views are Python objects), and
    PyG's layer computes the same function with the same parameters. As
    with every ``__prepare_scriptable__``, scripting a model that holds the
    layer puts the twin in the layer's place in that model.
    """

    def _set_jittable_templates(self, raise_on_error: bool = False) -> None:
        super()._set_jittable_templates(raise_on_error)
        self.__class__._orig_propagate = MessagePassing.propagate

    def __prepare_scriptable__(self) -> nn.Module:
        return pyg_twin(self)


def pyg_twin(module: nn.Module) -> nn.Module:
    r"""``module`` in PyG's classes: a shallow copy, sharing every parameter
    and buffer, in which each gnnagg module (``module`` included) that
    derives from a PyG class is of that class (PyG's constructor built its
    attributes). PyG's message-passing layers get PyG's TorchScript-ready
    ``propagate``."""
    twin = copy.copy(module)
    for registry in ("_parameters", "_buffers", "_modules"):
        twin.__dict__[registry] = type(module.__dict__[registry])(
            module.__dict__[registry])
    if type(module).__module__.startswith("gnnagg."):
        pyg_class = next((cls for cls in type(module).__mro__
                          if cls.__module__.startswith("torch_geometric.")),
                         None)
        if pyg_class is not None and pyg_class is not MessagePassing:
            twin.__class__ = pyg_class
            if isinstance(twin, MessagePassing):
                _inspect_as_pyg(twin)
    for name, child in module.named_children():
        twin._modules[name] = pyg_twin(child)
    return twin


def _inspect_as_pyg(conv: MessagePassing) -> None:
    """Give ``conv`` PyG's inspector of its (PyG) class, which reads the
    argument types TorchScript needs from that class's source, and the
    ``propagate`` and ``edge_updater`` PyG generates from it."""
    conv.inspector = Inspector(type(conv))
    conv.inspector.inspect_signature(conv.message)
    conv.inspector.inspect_signature(conv.aggregate, exclude=[0, "aggr"])
    conv.inspector.inspect_signature(conv.message_and_aggregate, [0])
    conv.inspector.inspect_signature(conv.update, exclude=[0])
    conv.inspector.inspect_signature(conv.edge_update)
    for name in ("propagate", "edge_updater"):  # the instance's, if set
        conv.__dict__.pop(name, None)
    conv._set_jittable_templates()

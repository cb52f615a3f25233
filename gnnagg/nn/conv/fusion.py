r"""When a gnnagg layer may take its fused CSR path instead of PyG's
message path (``message`` per edge, then ``aggregate``)."""
from __future__ import annotations

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
    """

    def _set_jittable_templates(self, raise_on_error: bool = False) -> None:
        super()._set_jittable_templates(raise_on_error)
        self.__class__._orig_propagate = MessagePassing.propagate

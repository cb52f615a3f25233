"""The one registry of model names: what each is, whether its layer reads
edge features, and whether it is a single layer kind (so ``gnnagg bench``
runs it in its one network shape) or a whole-network variant."""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple


class ModelEntry(NamedTuple):
    description: str
    #: its layer reads edge features (molecules' bonds)
    edge_features: bool = False
    #: a layer kind of :func:`gnnagg.models.make_conv`; False for a
    #: variant of a whole network (``tangnn_lc`` concatenates layers)
    layer: bool = True


#: name -> entry, in the order tables list them
MODELS: Dict[str, ModelEntry] = {
    "gat": ModelEntry("GAT (static attention)", edge_features=True),
    "gatv2": ModelEntry("GATv2 (dynamic attention)", edge_features=True),
    "pna": ModelEntry("PNA (mean/min/max/std x identity/amplification/"
                      "attenuation)", edge_features=True),
    "lcm": ModelEntry("learnable commutative monoid aggregation (GRU "
                      "operator)"),
    "gru": ModelEntry("recurrent GRU aggregation over a random neighbour "
                      "order (the LCM paper's baseline)"),
    "topm": ModelEntry("top-m attention aggregation"),
    "tangnn": ModelEntry("TANGNN (neighbours + global top-m attention)"),
    "tangnn_lc": ModelEntry("TANGNN-LC (layer outputs concatenated)",
                            layer=False),
    "sum": ModelEntry("sum aggregation baseline"),
    "mean": ModelEntry("mean aggregation baseline"),
    "max": ModelEntry("max aggregation baseline"),
}

#: the names that are single layer kinds
LAYER_KINDS: Tuple[str, ...] = tuple(
    name for name, entry in MODELS.items() if entry.layer)


def check_model(name: str) -> str:
    """``name`` if it is registered, else a ``ValueError`` listing them."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of "
                         f"{', '.join(MODELS)}")
    return name

"""``gnnagg reproduce NAME``: each paper's headline result under that
paper's own protocol, ours beside theirs."""
from __future__ import annotations

import importlib
from typing import Dict

from .base import Reproduction, reproduce

#: name -> "module:class" of its :class:`Reproduction`
REPRODUCTIONS: Dict[str, str] = {
    "gatv2-lookup": "gatv2_lookup:DictionaryLookup",
    "pna-multitask": "pna_multitask:PNAMultitask",
    "sum-extrapolation": "sum_extrapolation:SumExtrapolation",
    "lcm-second-min": "lcm_second_min:SecondMinimum",
    "tangnn-cora": "tangnn_cora:TANGNNCora",
    "pna-molhiv": "pna_molhiv:PNAMolhiv",
}


def get_reproduction(name: str, **options) -> Reproduction:
    """The reproduction ``name`` (``options`` go to its constructor, e.g.
    ``root=`` for data on disk)."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; choose one of "
                         f"{', '.join(REPRODUCTIONS)}")
    module, cls = REPRODUCTIONS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __name__),
                   cls)(**options)


__all__ = ["REPRODUCTIONS", "Reproduction", "get_reproduction", "reproduce"]

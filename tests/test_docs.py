"""The API reference's runnable examples run: every public layer and
aggregation module's ``Example::`` blocks pass as doctests."""
import doctest
import importlib

import pytest
import torch

MODULES = ["gnnagg.nn.conv.gat_conv", "gnnagg.nn.conv.gatv2_conv",
           "gnnagg.nn.conv.pna_conv", "gnnagg.nn.conv.tangnn_conv",
           "gnnagg.nn.aggr.lcm", "gnnagg.nn.aggr.multi",
           "gnnagg.nn.aggr.power_mean", "gnnagg.nn.aggr.scaler",
           "gnnagg.nn.aggr.softmax", "gnnagg.nn.aggr.topm"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"torch": torch},
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0

"""The API reference's runnable examples run: every public layer and
aggregation module's ``Example::`` blocks pass as doctests; every file the
README and docs link to is in the repository."""
import doctest
import importlib
import re
from pathlib import Path

import pytest
import torch

MODULES = ["gnnagg.nn.conv.gat_conv", "gnnagg.nn.conv.gatv2_conv",
           "gnnagg.nn.conv.pna_conv", "gnnagg.nn.conv.pna_simple_conv",
           "gnnagg.nn.conv.tangnn_conv",
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


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("page", ["README.md", "docs/USAGE.md",
                                  "docs/RESULTS.md"])
def test_linked_files_exist(page):
    # Markdown links and images to files of the repository (not URLs,
    # not anchors); a clean checkout must hold every one
    targets = re.findall(r"\]\(([^)#\s]+)", (ROOT / page).read_text())
    local = [t for t in targets if "://" not in t]
    assert local, f"{page} links to no file"
    missing = [t for t in local if not (ROOT / page).parent.joinpath(
        t).resolve().exists()]
    assert not missing, f"{page} links to missing files: {missing}"

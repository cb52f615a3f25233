"""Integration on the real Planetoid files in ../shared/datasets."""

import pytest
import torch

from gnnagg.bench.data import link_planetoid_raw
from gnnagg.bench.planetoid import train_transductive
from gnnagg.models import GATPaperNet

from conftest import SHARED, needs_cora

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def test_missing_raw_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="ind.cora.x"):
        link_planetoid_raw(tmp_path, tmp_path / "root", "Cora")


@needs_cora
@pytest.mark.parametrize("conv", ["gat", "gatv2"])
def test_gat_learns_cora(tmp_path, conv):
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures
    root = link_planetoid_raw(SHARED / "planetoid", tmp_path, "Cora")
    dataset = Planetoid(root, "Cora", transform=NormalizeFeatures())
    data = dataset[0]
    assert (data.num_nodes, data.num_edges) == (2708, 10556)
    torch.manual_seed(0)
    model = GATPaperNet(dataset.num_features, 8, dataset.num_classes, conv=conv)
    result = train_transductive(model, data, epochs=60, patience=60)
    assert result["test"] > 0.70  # 7 classes: chance is ~0.3
    assert result["curve"]["valid"][result["best_epoch"] - 1] == \
        result["valid"]

import gzip
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OUTDATED_IGNORE", "1")

#: the real data sets (../shared/datasets, or $GNNAGG_SHARED_DATASETS)
SHARED = Path(os.environ.get(
    "GNNAGG_SHARED_DATASETS",
    Path(__file__).resolve().parents[2] / "shared" / "datasets"))
#: tests that read the real Cora files skip, saying so, where they are absent
needs_cora = pytest.mark.skipif(
    not (SHARED / "planetoid" / "ind.cora.x").is_file(),
    reason=f"needs the real Cora files in {SHARED / 'planetoid'} (set "
           "GNNAGG_SHARED_DATASETS to their parent folder)")


SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "C1CCCCC1N",
          "c1ccccc1CC", "CCN(CC)CC", "O=C(O)c1ccccc1", "C1CCOC1",
          "c1ccncc1", "CC(C)O"] * 3


@pytest.fixture(scope="session")
def hiv_csv(tmp_path_factory):
    """The shared HIV.csv.gz when present, else a small file of the same
    columns."""
    real = SHARED / "moleculenet" / "HIV.csv.gz"
    if real.is_file():
        return real
    path = tmp_path_factory.mktemp("hiv") / "HIV.csv.gz"
    with gzip.open(path, "wt") as out:
        out.write("smiles,activity,HIV_active\n")
        for i, s in enumerate(SMILES):
            out.write(f"{s},CI,{i % 3 == 0:d}\n")
    return path


@pytest.fixture(scope="session")
def molhiv_root(hiv_csv, tmp_path_factory):
    from gnnagg.cli import main
    root = tmp_path_factory.mktemp("ogb")
    assert main(["prepare", "ogbg-molhiv", "--from", str(hiv_csv),
                 "--root", str(root)]) == 0
    return root


@pytest.fixture
def dynamic_shapes(request):
    """dynamo's capture_dynamic_output_shape_ops set to the test's
    parameter (indirect) for the test, with dynamo's caches reset."""
    import torch._dynamo
    previous = torch._dynamo.config.capture_dynamic_output_shape_ops
    torch._dynamo.config.capture_dynamic_output_shape_ops = request.param
    torch._dynamo.reset()
    yield request.param
    torch._dynamo.config.capture_dynamic_output_shape_ops = previous
    torch._dynamo.reset()


@pytest.fixture
def degree_groups_at_any_size(monkeypatch):
    """The one-product-per-degree computation of
    :func:`gnnagg.ops.degree_scaled_linear` on graphs of any size (small
    test graphs would otherwise take the per-scaler products)."""
    from gnnagg.ops import degree_linear
    monkeypatch.setattr(degree_linear, "GROUP_SAVING", 0)
    monkeypatch.setattr(degree_linear, "GROUP_WEIGHT_SHARE", float("inf"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


def random_graph(num_src, num_edges, num_dst=None, seed=0):
    """Random edges (duplicates and self-loops included)."""
    gen = torch.Generator().manual_seed(seed)
    num_dst = num_src if num_dst is None else num_dst
    return torch.stack([torch.randint(0, num_src, (num_edges,), generator=gen),
                        torch.randint(0, num_dst, (num_edges,), generator=gen)])


def skewed_graph(num_nodes, seed=0):
    """Node 0 a hub with every node as neighbour, a few isolated nodes, a
    chain elsewhere, and duplicated edges."""
    hub = torch.stack([torch.arange(num_nodes), torch.zeros(num_nodes,
                                                            dtype=torch.long)])
    chain = torch.stack([torch.arange(1, num_nodes - 3),
                         torch.arange(2, num_nodes - 2)])
    dup = torch.tensor([[3, 3, 4], [5, 5, 5]])
    edge_index = torch.cat([hub, chain, dup], dim=1)
    gen = torch.Generator().manual_seed(seed)
    return edge_index[:, torch.randperm(edge_index.size(1), generator=gen)]

"""The benchmark scripts' own logic, end to end on small inputs (their
figures are measured by hand at full size and are not tests)."""
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import SHARED, needs_cora

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import floor  # noqa: E402
import scaling  # noqa: E402
import speed  # noqa: E402
import train_speed  # noqa: E402
import where_time_goes  # noqa: E402


def test_speed_rows_pair_pyg_and_gnnagg():
    rows = speed.main(["--layers", "GATConv,aggr=sum", "--graphs",
                       "molecules", "--repeats", "1"])
    assert [row["layer"] for row in rows] == ["GATConv", "aggr=sum"]
    for row in rows:
        assert row["pyg_time_s"] > 0 and row["gnnagg_time_s"] > 0
        assert math.isclose(row["time_ratio"],
                            row["gnnagg_time_s"] / row["pyg_time_s"])


def test_floor_is_dense_plus_sparse_and_layers_are_multiples_of_it():
    (row,) = floor.main(["--layers", "GATv2Conv", "--graphs", "molecules",
                         "--repeats", "1"])
    assert row["dense_s"] > 0 and row["sparse_s"] > 0
    assert math.isclose(row["floor_s"], row["dense_s"] + row["sparse_s"])
    for impl in ("pyg", "gnnagg"):
        assert math.isclose(row[f"{impl}_multiple"],
                            row[f"{impl}_s"] / row["floor_s"])


def test_where_time_goes_profiles_both_sides(capsys):
    where_time_goes.main(["--layers", "GATConv", "--graphs", "molecules",
                          "--steps", "1", "--rows", "4"])
    out = capsys.readouterr().out
    for impl in ("pyg", "gnnagg"):
        assert f"===== GATConv on molecules, {impl}, 1 steps on cpu" in out
    assert out.count("Self CPU time total") == 2


def test_where_time_goes_refuses_unknown_names():
    with pytest.raises(SystemExit):
        where_time_goes.main(["--layers", "NoSuchConv"])


def test_scaling_runs_more_steps_than_one_epoch_holds(tmp_path):
    """300 seed nodes make one batch per epoch: the timed steps run on into
    later epochs, and the throughput counts the seeds really trained."""
    (row,) = scaling.main(["--nodes", "3000", "--edges", "20000",
                           "--batch-size", "1024", "--steps", "3",
                           "--warmup", "1", "--models", "gat",
                           "--processes", "1", "--fanout", "5,5",
                           "--cache-dir", str(tmp_path)])
    assert row["seeds"] == 3 * 300
    assert row["seeds_per_s"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--nodes", "5"], "--nodes: at least 10 per process"),
    (["--processes", "1,0"], "argument --processes: must be at least 1"),
    (["--steps", "0"], "argument --steps: must be at least 1"),
    (["--models", "gat,nosuch"], "--models: unknown model 'nosuch'"),
])
def test_scaling_refuses_bad_arguments_before_building_a_graph(
        tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        scaling.main(argv + ["--cache-dir", str(tmp_path)])
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@needs_cora
def test_train_speed_times_gat_epochs_on_cora(tmp_path):
    (row,) = train_speed.main(["--cases", "gat-cora", "--repeats", "1",
                               "--raw-dir", str(SHARED / "planetoid"),
                               "--cache", str(tmp_path)])
    assert row["pyg_time_s"] > 0 and row["gnnagg_time_s"] > 0
    assert math.isclose(row["time_ratio"],
                        row["gnnagg_time_s"] / row["pyg_time_s"])


@pytest.mark.parametrize("script, argv", [
    (speed, ["--repeats", "0"]),
    (speed, ["--rounds", "-1"]),
    (floor, ["--repeats", "0"]),
    (train_speed, ["--rounds", "0"]),
    (train_speed, ["--molhiv-batches", "0"]),
    (where_time_goes, ["--steps", "0"]),
])
def test_counts_below_one_are_refused_naming_the_argument(script, argv,
                                                          capsys):
    with pytest.raises(SystemExit):
        script.main(argv)
    err = capsys.readouterr().err
    assert f"argument {argv[0]}: must be at least 1" in err


def test_sorted_speed_cases_hand_the_aggregation_its_ptr(monkeypatch):
    """``aggr=NAME-sorted`` measures the sorted path: PyG's MessagePassing
    passes the CSR ``ptr`` of the destination-sorted EdgeIndex."""
    import gnnagg.nn.aggr.base as base
    seen = []
    original = base.SegmentAggregation.forward

    def spy(self, x, index=None, ptr=None, dim_size=None, dim=-2):
        seen.append(ptr is not None)
        return original(self, x, index, ptr, dim_size, dim)
    monkeypatch.setattr(base.SegmentAggregation, "forward", spy)
    build, inputs = speed.CASES["aggr=mean-sorted"]
    graph = speed.GRAPHS["molecules"]()
    args, kwargs = inputs(graph, torch.device("cpu"))
    build("gnnagg", graph)(*args, **kwargs)
    assert seen == [True]



def _second_min_checkpoint(path, model):
    from gnnagg.bench.reproduce.lcm_second_min import (SetNet,
                                                       make_aggregation)
    torch.manual_seed(1)
    net = SetNet(make_aggregation(model, 128, 4))
    torch.save({"model": net.state_dict(), "loop": {"epoch": 3}}, path)
    return str(path)


def test_lcm_tree_shapes_pads_pygs_lcm_with_zero_leaves(tmp_path):
    """Padding PyG's LCM to a set's own size (a power of 2) changes nothing;
    padding further adds tree levels and changes the logits."""
    import lcm_tree_shapes
    from torch_geometric.loader import DataLoader
    from gnnagg.bench.reproduce.lcm_second_min import second_minimum_sets
    net, epoch = lcm_tree_shapes.load_net("lcm-pyg", _second_min_checkpoint(
        tmp_path / "pyg.pt", "lcm-pyg"))
    assert epoch == 3
    batch = next(iter(DataLoader(second_minimum_sets(8, 8, 16, 16, 5), 8)))
    with torch.no_grad():
        own = lcm_tree_shapes.logits(net, batch)
        torch.testing.assert_close(lcm_tree_shapes.logits(net, batch, 16),
                                   own)
        assert not torch.allclose(lcm_tree_shapes.logits(net, batch, 32),
                                  own)


def test_lcm_tree_shapes_tables_pad_only_pygs_lcm(tmp_path):
    import lcm_tree_shapes
    paths = {m: _second_min_checkpoint(tmp_path / f"{m}.pt", m)
             for m in ("lcm-pyg", "lcm")}
    results = lcm_tree_shapes.main(
        ["--checkpoint", f"lcm-pyg={paths['lcm-pyg']}", "--checkpoint",
         f"lcm={paths['lcm']}", "--sizes", "2,16", "--pads", "8,32",
         "--sets", "16"])
    pyg, ours = results["lcm-pyg"], results["lcm"]
    assert [row["size"] for row in pyg] == [2, 16]
    # padded only where the sets fit, and only PyG's LCM
    assert pyg[0]["pad 8"] is not None and pyg[1]["pad 8"] is None
    assert all(0 <= row["pad 32"] <= 1 for row in pyg)
    assert all(row["pad 8"] is None and row["pad 32"] is None
               for row in ours)


def test_lcm_tree_shapes_refuses_bad_arguments():
    import lcm_tree_shapes
    with pytest.raises(SystemExit):
        lcm_tree_shapes.main(["--checkpoint", "no-equals-sign"])
    with pytest.raises(SystemExit):
        lcm_tree_shapes.main(["--checkpoint", "lcm=x.pt", "--sizes", "1"])

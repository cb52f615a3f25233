"""The runners end to end: real data from ../shared/datasets when present,
data built in the same on-disk layouts otherwise."""
import json
import os
import subprocess
from pathlib import Path
import sys

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnagg.bench.molhiv import scaffold_split, _parse
from gnnagg.bench.results import ResultStore, leaderboard
from gnnagg.bench.suite import PRESETS, run_suite, suite_folder
from gnnagg.bench.synthetic import (degree_extrapolation, dictionary_lookup,
                                    multitask_graphs)
from gnnagg.cli import main
from gnnagg.models import LAYER_KINDS, MODELS, build_model
from gnnagg.nn.aggr import degree_histogram

from conftest import SHARED, SMILES, needs_cora

pytestmark = pytest.mark.integration


def test_prepared_molhiv_loads_with_ogb_unchanged(molhiv_root, hiv_csv):
    from gnnagg.bench.ogb import load_ogb
    dataset = load_ogb("ogbg-molhiv", str(molhiv_root))
    split = dataset.get_idx_split()
    sizes = [len(split[k]) for k in ("train", "valid", "test")]
    if hiv_csv.parent.name == "moleculenet":
        assert len(dataset) == 41127
        assert sizes == [32901, 4113, 4113]  # OGB's official split
    else:
        assert sum(sizes) == len(dataset) == len(SMILES)
    graph = dataset[0]
    assert graph.x.shape[1] == 9 and graph.edge_attr.shape[1] == 3
    assert graph.edge_index.size(1) == graph.edge_attr.size(0)


def test_unsanitisable_smiles_are_kept_with_own_scaffold():
    odd = "C1=CC=CC=C1[N+](=O)(=O)"  # pentavalent N: fails sanitisation
    mols, parsed = zip(*(_parse(s) for s in ["CCO", odd, "CCC"]))
    assert list(parsed) == [True, False, True]
    split = scaffold_split(["CCO", odd, "CCC"], list(mols), list(parsed),
                           0.34, 0.33)
    assert sorted(sum(split.values(), [])) == [0, 1, 2]


def test_ogb_runner_resumes_and_writes_reports(molhiv_root, tmp_path):
    out = tmp_path / "res"
    args = ["ogb", "ogbg-molhiv", "--model", "gatv2", "--runs", "1",
            "--epochs", "1", "--root", str(molhiv_root), "--out", str(out),
            "--config", str(tmp_path / "cfg.json")]
    (tmp_path / "cfg.json").write_text(json.dumps(
        {"default": {"batch_size": 512, "model": {"hidden_channels": 16,
                                                   "num_layers": 1}}}))
    assert main(args) == 0
    records = ResultStore(out).records()
    assert len(records) == 1 and 0.0 <= records[0]["test"] <= 1.0
    assert records[0]["curve"]["valid"][0] == records[0]["valid"]
    assert (out / "leaderboard.md").read_text().count("ogbg-molhiv") == 1
    assert (out / "curves.png").stat().st_size > 0
    assert main(args[:4] + ["--runs", "2"] + args[6:]) == 0  # resume
    seeds = [r["seed"] for r in ResultStore(out).records()]
    assert seeds == [0, 1]  # seed 0 not redone


def test_torchrun_prepares_a_never_processed_data_set_once(hiv_csv,
                                                            tmp_path):
    """Two ranks on raw files never processed: rank 0 processes them while
    rank 1 waits (both at once corrupted the processed file)."""
    root, out = tmp_path / "ogb", tmp_path / "res"
    assert main(["prepare", "ogbg-molhiv", "--from", str(hiv_csv),
                 "--root", str(root)]) == 0
    processed = root / "ogbg_molhiv" / "processed"
    assert not processed.exists()
    (tmp_path / "cfg.json").write_text(json.dumps(
        {"default": {"batch_size": 1024, "model": {"hidden_channels": 8,
                                                    "num_layers": 1}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc-per-node", "2", "-m", "gnnagg", "ogb", "ogbg-molhiv",
         "--model", "gat", "--runs", "1", "--epochs", "1", "--root",
         str(root), "--out", str(out), "--config",
         str(tmp_path / "cfg.json")], capture_output=True, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1", OUTDATED_IGNORE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [record] = ResultStore(out).records()
    assert record["processes"] == 2 and 0.0 <= record["test"] <= 1.0
    assert len(list(processed.glob("*.pt"))) >= 1


@needs_cora
@pytest.mark.slow
@pytest.mark.parametrize("model, epochs, floor", [("gat", 30, 0.6)] + [
    (name, 1, 0.0) for name in MODELS if name != "gat"])
def test_planetoid_runner_on_real_cora(tmp_path, model, epochs, floor):
    """Every registered model runs under ``gnnagg planetoid`` (PNA reads its
    degree histogram from the data set)."""
    out = tmp_path / "res"
    assert main(["planetoid", "Cora", "--model", model, "--runs", "1",
                 "--epochs", str(epochs), "--patience", str(epochs),
                 "--root", str(tmp_path / "data"), "--raw-dir",
                 str(SHARED / "planetoid"), "--out", str(out)]) == 0
    record = ResultStore(out).records()[0]
    assert record["dataset"] == "Cora" and record["model"] == model
    assert record["test"] > floor


@pytest.mark.parametrize("argv, message", [
    (["ogb", "ogbg-molhiv", "--model", "pna", "--root", "{tmp}/none"],
     "gnnagg prepare"),
    (["ogb", "ogbn-mag", "--model", "pna"], "unknown OGB data set"),
    (["ogb", "Cora", "--model", "gat"], "gnnagg planetoid"),
    (["planetoid", "Cora", "--model", "gcn"], "unknown model"),
    (["planetoid", "Cora", "--model", "gat", "--raw-dir", "{tmp}"],
     "ind.cora.x"),
    (["prepare", "ogbg-molhiv", "--from", "{tmp}/HIV.csv"], "no such file"),
])
def test_bad_requests_end_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "gnnagg", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "bench" in proc.stdout


def test_leaderboard_separates_configurations_and_single_runs():
    def record(seed, test, epochs):
        return {"dataset": "d", "model": "pna", "seed": seed, "test": test,
                "valid": test, "params": 10, "time_per_epoch_s": 1.0,
                "config": {"epochs": epochs}}
    board = leaderboard([record(0, 0.5, 10), record(1, 0.7, 10),
                         record(0, 0.9, 50)], "acc")
    rows = [line for line in board.splitlines() if line.startswith("| d |")]
    assert len(rows) == 2
    assert "| 90.00 | 90.00 | 1 |" in rows[0]  # one run: no spread shown
    assert "| 60.00 +- 14.14 |" in rows[1]
    assert all("pna [" in row for row in rows)  # tagged by configuration


def test_dictionary_lookup_structure():
    train, test = dictionary_lookup(4)
    assert len(train) + len(test) == 24  # all 4! permutations
    graph = train[0]
    assert graph.edge_index.size(1) == 16
    keys, values = graph.x[:4], graph.x[4:]
    perm = graph.y[4:]
    assert torch.equal(keys[:, 1], perm)  # key j holds value perm[j]
    assert torch.equal(keys[:, 0], torch.arange(4))
    assert torch.equal(graph.x[4:, 0], torch.arange(4))
    assert torch.equal(values[:, 1], torch.full((4,), 4))
    assert bool((graph.y[:4] == -1).all())
    # the paper's split: train graphs use only allowed (key, value) pairs,
    # int(0.8 ** (1/4) * 16) = 15 of the 16; every test graph holds the other
    def pairs(g):
        return {(i, int(v)) for i, v in enumerate(g.y[4:])}
    trained = set().union(*map(pairs, train))
    assert len(trained) == 15
    assert all(pairs(g) - trained for g in test)
    assert len(test) == 6  # the 3! permutations with the held-out pair
    big_train, big_test = dictionary_lookup(10, 2_000, seed=1)
    assert len(big_train) + len(big_test) == 2_000
    assert 0.7 < len(big_train) / 2_000 < 0.9


def test_generators_are_deterministic():
    a, b = multitask_graphs(12, seed=3), multitask_graphs(12, seed=3)
    assert all(torch.equal(x.y_node, y.y_node) for x, y in zip(a, b))
    star = degree_extrapolation([7], 1)[0]
    assert star.num_nodes == 8
    torch.testing.assert_close(star.y.view(()), star.x[1:].mean())


def test_second_min_target_is_the_second_smallest_neighbour():
    for star in degree_extrapolation([2, 5, 30], 3, "second_min", seed=1):
        values = sorted(star.x[1:].view(-1).tolist())
        assert float(star.y) == values[1]
    with pytest.raises(ValueError, match="degrees >= 2"):
        degree_extrapolation([1, 4], 1, "second_min")
    with pytest.raises(ValueError, match="target must be one of"):
        degree_extrapolation([4], 1, "median")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_trains_on_node_and_graph_tasks(name):
    graphs = [Data(x=torch.randn(n, 5), edge_index=torch.randint(n, (2, 3 * n)),
                   num_nodes=n) for n in (6, 9)]
    batch = Batch.from_data_list(graphs)
    deg = degree_histogram(graphs)
    for graph_level, rows in ((False, 15), (True, 2)):
        torch.manual_seed(0)
        net = build_model(name, 5, 3, graph_level=graph_level, deg=deg,
                          hidden_channels=8, heads=2, m=4)
        out = net(batch.x, batch.edge_index, batch=batch.batch)
        assert out.shape == (rows, 3) and bool(out.isfinite().all())
        out.square().mean().backward()
        trained = [p for p in net.parameters() if p.grad is not None]
        assert trained and all(bool(p.grad.isfinite().all()) for p in trained)
    net = build_model(name, 5, 3, deg=deg, hidden_channels=8, heads=2,
                      m=4).eval()  # a graph without nodes
    empty = net(torch.empty(0, 5), torch.empty(2, 0, dtype=torch.long))
    assert empty.shape == (0, 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_for_ogb_molecules(name):
    """``gnnagg ogb ogbg-molhiv --model NAME``'s network for every model:
    OGB's atom (and, for layers that read them, bond) encoders, integer
    features, one logit per graph, finite gradients."""
    sizes = (7, 4)
    graphs = [Data(x=torch.randint(0, 2, (n, 9)),
                   edge_index=torch.randint(n, (2, 2 * n)),
                   edge_attr=torch.randint(0, 2, (2 * n, 3)), num_nodes=n)
              for n in sizes]
    batch = Batch.from_data_list(graphs)
    net = build_model(name, 9, 1, graph_level=True, molecular=True,
                      deg=degree_histogram(graphs), hidden_channels=8,
                      heads=2, m=2)
    out = net(batch.x, batch.edge_index, batch.edge_attr, batch.batch)
    assert out.shape == (len(sizes), 1) and bool(out.isfinite().all())
    out.sum().backward()
    assert all(bool(p.grad.isfinite().all()) for p in net.parameters()
               if p.grad is not None)
    assert net.encoder.__class__.__name__ == "AtomEncoder"


@pytest.mark.slow
def test_suite_quick_runs_resumes_keys_by_seed_and_sizes_and_plots(
        tmp_path, monkeypatch):
    run = run_suite(tmp_path, "quick")  # every layer kind
    folder = run["folder"]
    assert folder == suite_folder(tmp_path, "quick", 0)
    assert folder.name.startswith("quick-seed0-")
    assert "PNA multitask (log10 MSE)" in run["results"]
    for by_model in run["results"].values():
        assert list(by_model) == list(LAYER_KINDS)
    board = (folder / "leaderboard.md").read_text()
    assert "gatv2" in board and "tangnn" in board and "mse_d1000" in board
    assert "second-smallest" in board and "ms_d1000" in board
    assert sorted(f.name for f in run["figures"]) == [
        "extrapolation.png", "lookup.png", "multitask.png"]
    for figure in run["figures"]:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.glob("*.tmp*"))
    saved = json.loads((folder / "suite.json").read_text())
    assert saved["sizes"] == PRESETS["quick"] and saved["seed"] == 0
    mtime = (folder / "suite.json").stat().st_mtime
    again = run_suite(tmp_path, "quick")
    assert again["seconds"] == {}  # nothing trained again
    assert (folder / "suite.json").stat().st_mtime == mtime
    # another seed, or other sizes, start from nothing in a folder of their
    # own: seed 0's results are not theirs
    other_seed = run_suite(tmp_path, "quick", seed=1, models=[])
    assert other_seed["results"] == {} and other_seed["folder"] != folder
    monkeypatch.setitem(PRESETS, "quick",
                        {**PRESETS["quick"], "lookup_steps": 7})
    other_sizes = run_suite(tmp_path, "quick", models=[])
    assert other_sizes["results"] == {} and other_sizes["folder"] != folder
    with pytest.raises(ValueError, match="preset"):
        run_suite(tmp_path, "medium")


def test_ogb_hyperparameters_ship_with_the_package():
    import gnnagg
    from gnnagg.bench.ogb import CONFIG_DIR, load_config
    assert CONFIG_DIR.is_relative_to(Path(gnnagg.__file__).parent)
    config = load_config("ogbg-molhiv", "pna")
    assert config["batch_size"] == 128 and config["model"]["num_layers"] == 4


def test_commands_without_the_bench_extra_say_what_to_install(monkeypatch,
                                                              capsys):
    import gnnagg.cli as cli

    def missing(args):
        raise ModuleNotFoundError("No module named 'ogb'", name="ogb")

    monkeypatch.setattr(cli, "_run", missing)
    assert main(["ogb", "ogbg-molhiv", "--model", "gat"]) == 2
    assert "pip install 'gnnagg[bench]'" in capsys.readouterr().err


def scripted(values):
    values = iter(values)

    def evaluate():
        value = next(values)
        return {"valid": value, "test": value}
    return evaluate


def test_fit_patience_counts_only_improvements_above_min_delta():
    from gnnagg.bench.training import fit
    creeping = [0.5, 0.50005, 0.50008, 0.6, 0.7, 0.8]
    kwargs = dict(epochs=6, patience=2, show_progress=False)
    # gains of 5e-5 and 3e-5 are not progress with min_delta=1e-4
    assert fit(lambda e: 0.0, scripted(creeping), min_delta=1e-4,
               **kwargs)["epochs"] == 3
    assert fit(lambda e: 0.0, scripted(creeping), **kwargs)["epochs"] == 6


def test_fit_stops_once_the_target_is_reached():
    from gnnagg.bench.training import fit
    result = fit(lambda e: 0.0, scripted([0.3, 1.0, 0.9, 0.9]), epochs=4,
                 stop_at=1.0, show_progress=False)
    assert result["epochs"] == 2 and result["test"] == 1.0

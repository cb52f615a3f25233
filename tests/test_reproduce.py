"""``gnnagg reproduce``: every protocol's quick run, resuming, and the
protocol pieces against their definitions."""
import json
import math
import shutil
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.utils import degree

from gnnagg.bench.reproduce import (REPRODUCTIONS, Reproduction,
                                    get_reproduction, reproduce)
from gnnagg.bench.reproduce.base import Run
from gnnagg.bench.reproduce.gatv2_lookup import LookupNet
from gnnagg.bench.reproduce.lcm_second_min import (
    most_common_label_share, second_minimum_sets)
from gnnagg.bench.reproduce.pna_molhiv import PNAMolhivNet
from gnnagg.bench.reproduce.pna_multitask import PNAMultitask, size_batches
from gnnagg.bench.reproduce.sum_extrapolation import (ExtrapolationNet,
                                                      grid, svf_graph,
                                                      ucf_graph)
from gnnagg.bench.synthetic import _toggle_edges, pna_multitask_graphs
from gnnagg.cli import main
from gnnagg.nn.aggr import LCMAggregation, SumAggregation

from conftest import SHARED, needs_cora

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _options(name, molhiv_root):
    if name == "pna-molhiv":
        return {"root": str(molhiv_root)}
    if name == "tangnn-cora":
        return {"root": None, "raw_dir": str(SHARED / "planetoid")}
    return {}


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_quick_run_writes_results_table_and_figure(name, tmp_path, request):
    if name == "tangnn-cora":
        request.applymarker(needs_cora)
        if not (SHARED / "planetoid" / "ind.cora.x").is_file():
            pytest.skip("needs the real Cora files")
    options = _options(name, request.getfixturevalue("molhiv_root")
                       if name == "pna-molhiv" else None)
    if name == "tangnn-cora":
        options["root"] = str(tmp_path / "Planetoid")
    item = get_reproduction(name, **options)
    summary = reproduce(item, tmp_path, quick=True)
    folder = tmp_path / f"{name}-quick"
    saved = json.loads((folder / "results.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert set(saved) >= {"paper", "ours", "protocol", "epochs_run"}
    assert saved["paper"] == json.loads(json.dumps(item.paper_results))
    protocol = item.protocol(quick=True)
    assert list(saved["ours"]) == protocol["models"]
    for model, metrics in saved["ours"].items():
        assert metrics, model
        for metric, value in metrics.items():
            assert set(value) == {"mean", "std", "n"}
            assert value["n"] == len(protocol["tasks"]) or \
                value["n"] == 1, (model, metric)
            assert math.isfinite(value["mean"])
            if "acc" in metric or "rocauc" in metric or "f1" in metric:
                assert 0 <= value["mean"] <= 1, (model, metric)
        assert saved["epochs_run"][model] == protocol["epochs"]
    table = (folder / "results.md").read_text()
    paper_line, ours_line = item.headline(summary)
    assert saved["headline"] == {"paper": paper_line, "ours": ours_line}
    assert f"- ours: {ours_line}" in table
    assert "| model | metric | paper | ours |" in table
    for model in protocol["models"]:
        assert f"| {model} |" in table
    assert (folder / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second call finds every run done and trains nothing
    before = (folder / "results.jsonl").read_text()
    reproduce(item, tmp_path, quick=True)
    assert (folder / "results.jsonl").read_text() == before


class Line(Reproduction):
    """A linear fit with a step LR schedule, to test the shared runner."""
    name = "line"
    paper = "none"
    paper_results = {"fit": {"mse": 0.0}}
    fail_at = None

    def protocol(self, quick):
        return {"models": ["fit"], "tasks": ["t"], "epochs": 6,
                "patience": None}

    def build(self, task, model, seed, protocol, cache):
        net = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)
        x = torch.randn(32, 3)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

        def train_epoch(epoch):
            if epoch == self.fail_at:
                raise KeyboardInterrupt
            noise = torch.randn(32, 1) * 0.01  # uses the checkpointed RNG
            loss = ((net(x) - y - noise) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            return float(loss)

        def evaluate():
            with torch.no_grad():
                mse = float(((net(x) - y) ** 2).mean())
            return {"valid": -mse, "test": -mse,
                    "lr": optimizer.param_groups[0]["lr"]}

        return Run(net, optimizer, train_epoch, evaluate, scheduler,
                   final=lambda: {"weight0": float(net.weight[0, 0])})

    def metrics(self, record):
        return {"mse": -record["test"], **record["final"]}

    def figure(self, summary, records):
        import matplotlib.pyplot as plt
        return plt.figure()

    def headline(self, summary):
        return "0", str(summary["ours"]["fit"]["mse"]["mean"])


def test_a_stopped_run_resumes_exactly(tmp_path):
    whole = reproduce(Line(), tmp_path / "whole", seeds=2)
    stopped = Line()
    stopped.fail_at = 4
    with pytest.raises(KeyboardInterrupt):
        reproduce(stopped, tmp_path / "stopped", seeds=2)
    assert not (tmp_path / "stopped" / "line" / "results.jsonl").exists()
    resumed = reproduce(Line(), tmp_path / "stopped", seeds=2)
    assert resumed["ours"] == whole["ours"]
    assert resumed["ours"]["fit"]["mse"]["n"] == 2
    records = [json.loads(line) for line in
               (tmp_path / "stopped" / "line" / "results.jsonl")
               .read_text().splitlines()]
    assert records[0]["resumed_from_epoch"] == 3
    # the step schedule went on from the checkpoint: 0.1 halved every 2
    lrs = [0.1 * 0.5 ** (epoch // 2) for epoch in range(1, 7)]
    assert records[0]["best_scores"]["lr"] == pytest.approx(lrs[-1])


def test_a_changed_protocol_never_resumes_another_protocols_checkpoint(
        tmp_path):
    stopped = Line()
    stopped.fail_at = 4
    with pytest.raises(KeyboardInterrupt):
        reproduce(stopped, tmp_path)

    class Longer(Line):
        def protocol(self, quick):
            return dict(super().protocol(quick), epochs=7)

    reproduce(Longer(), tmp_path)
    record = json.loads((tmp_path / "line" / "results.jsonl").read_text())
    assert record["resumed_from_epoch"] == 0 and record["epochs"] == 7


def test_committed_records_are_adopted_not_run_again(tmp_path):
    whole = reproduce(Line(), tmp_path / "first", seeds=2)
    committed = tmp_path / "line.jsonl"
    committed.write_text(
        (tmp_path / "first" / "line" / "results.jsonl").read_text())
    never = Line()
    never.fail_at = 1  # any run started here would raise
    adopted = reproduce(never, tmp_path / "fresh", seeds=2,
                        records=committed)
    assert adopted["ours"] == whole["ours"]
    # only the missing third seed runs; adopting again duplicates nothing
    more = reproduce(Line(), tmp_path / "fresh", seeds=3, records=committed)
    assert more["ours"]["fit"]["mse"]["n"] == 3
    assert len((tmp_path / "fresh" / "line" / "results.jsonl").read_text()
               .splitlines()) == 3


def test_kept_checkpoints_carry_an_unfinished_run_to_a_fresh_checkout(
        tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] /
                           "benchmarks"))
    from collect_reproductions import keep_unfinished_checkpoints

    whole = reproduce(Line(), tmp_path / "whole", seeds=2)
    stopped = Line()
    stopped.fail_at = 4  # seed 0 stops after 3 epochs
    with pytest.raises(KeyboardInterrupt):
        reproduce(stopped, tmp_path / "old", seeds=2)
    kept = tmp_path / "committed" / "line"
    keep_unfinished_checkpoints(tmp_path / "old" / "line", kept)
    assert [p.name for p in kept.iterdir()] == [
        p.name for p in (tmp_path / "old" / "line" / "checkpoints").glob("*")
        if not p.stem.endswith(".previous")]
    # a fresh checkout: the committed checkpoint is all it has
    fresh = tmp_path / "fresh" / "line" / "checkpoints"
    fresh.mkdir(parents=True)
    for path in kept.iterdir():
        shutil.copyfile(path, fresh / path.name)
    resumed = reproduce(Line(), tmp_path / "fresh", seeds=2)
    assert resumed["ours"] == whole["ours"]
    first = json.loads((tmp_path / "fresh" / "line" / "results.jsonl")
                       .read_text().splitlines()[0])
    assert first["resumed_from_epoch"] == 3
    # both runs finished: nothing is kept any more
    keep_unfinished_checkpoints(tmp_path / "fresh" / "line", kept)
    assert list(kept.iterdir()) == []


def test_damaged_committed_records_are_refused(tmp_path, capsys):
    damaged = tmp_path / "line.jsonl"
    damaged.write_text('{"dataset": "line/t"}\n')
    with pytest.raises(ValueError, match="line 1 of .* is not a whole"):
        reproduce(Line(), tmp_path, records=damaged)
    with pytest.raises(SystemExit) as refused:
        main(["reproduce", "gatv2-lookup", "--quick", "--records",
              str(tmp_path / "missing.jsonl")])
    assert refused.value.code == 2
    assert "--records: no such file" in capsys.readouterr().err


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown reproduction"):
        get_reproduction("gat-lookup")
    with pytest.raises(ValueError, match="unknown model"):
        reproduce(Line(), tmp_path, models=["nope"])
    with pytest.raises(ValueError, match="seeds"):
        reproduce(Line(), tmp_path, seeds=0)


def test_cli_lists_every_reproduction(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in REPRODUCTIONS:
        assert name in out
    assert main(["reproduce", "nope", "--quick"]) == 2
    assert "unknown reproduction" in capsys.readouterr().err


# -- protocol pieces ---------------------------------------------------------

def test_second_minimum_sets_label_the_second_smallest():
    sets = second_minimum_sets(200, 4, 2, 6, seed=3)
    power = torch.tensor([8, 4, 2, 1])
    for data in sets:
        values = sorted((data.x * power).sum(-1).tolist())
        assert int((data.y[0] * power).sum()) == values[1]
        assert 2 <= data.num_nodes <= 6
    # small bit widths force repeated values: multiplicity counts
    assert any(len(set((d.x * power).sum(-1).tolist())) < d.num_nodes
               for d in sets)


def test_most_common_label_share_is_a_constant_answers_accuracy():
    sets = second_minimum_sets(300, 3, 2, 5, seed=4)
    labels = [tuple(d.y.view(-1).tolist()) for d in sets]
    best = max(sum(label == answer for label in labels)
               for answer in set(labels)) / len(sets)
    assert most_common_label_share(sets) == best
    # large sets of 8-bit values mostly hold two zeros: 0 is their answer
    large = second_minimum_sets(64, 8, 1024, 1024, seed=5)
    assert most_common_label_share(large) > 0.75
    assert sum(d.y.sum() == 0 for d in large) / 64 > 0.75


def test_ucf_and_svf_graphs():
    star = ucf_graph(4, 7)
    assert star.num_nodes == 5 and star.y.item() == 7
    assert (star.edge_index[1] == 0).all()
    assert star.x[1:].eq(7).all() and star.x[0].item() == 0
    svf = svf_graph(3, 5)
    assert svf.num_nodes == 1 + 3 + 5 and svf.y.item() == 5
    in_degree = degree(svf.edge_index[1], svf.num_nodes)
    assert in_degree[0] == 3 and in_degree[1:4].eq(5).all()
    assert in_degree[4:].eq(0).all()
    # sorted by target, and so is a batch of them (its CSR needs no sort)
    batch = Batch.from_data_list([svf, star, svf_graph(2, 1)])
    assert bool((batch.edge_index[1].diff() >= 0).all())
    # one sum layer counts c at every middle; a mean of those gives c
    counts = SumAggregation()(svf.x[svf.edge_index[0]], svf.edge_index[1],
                              dim_size=svf.num_nodes)
    assert counts[1:4].eq(5).all()
    assert grid(1, 1000, 4) == [1, 10, 100, 1000]
    assert grid(1, 5, 10) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("aggregation", ["sum", "mean", "sum+mean"])
def test_extrapolation_net_is_the_paper_network_on_pyg_simple_conv(
        aggregation, layers):
    """The sparse-product network, which runs each layer only where its
    output reaches a root, against x' = MLP([x, SimpleConv(aggr)(x)]) on
    every node with PyG's aggregation and the same weights: outputs and
    gradients, on a batch of SVF and UCF graphs (empty neighbourhoods
    included), read out at roots given out of order."""
    from torch_geometric.nn import SimpleConv
    torch.manual_seed(0)
    net = ExtrapolationNet(aggregation, hidden=8, layers=layers).double()
    batch = Batch.from_data_list([svf_graph(3, 5), ucf_graph(4, 7),
                                  svf_graph(2, 1), ucf_graph(1, 2)])
    x = batch.x.double()
    roots = batch.ptr[:-1].flip(0)
    aggr = {"sum": "sum", "mean": "mean", "sum+mean": ["sum", "mean"]}
    conv = SimpleConv(aggr[aggregation])

    def reference():
        h = x
        for mlp in net.mlps:
            h = mlp(torch.cat([h, conv(h, batch.edge_index)], -1))
        return net.out(h[roots])

    out = net(x, batch.edge_index, roots)
    expected = reference()
    torch.testing.assert_close(out, expected)
    params = list(net.parameters())
    for got, want in zip(torch.autograd.grad(out.sum(), params),
                         torch.autograd.grad(expected.sum(), params)):
        torch.testing.assert_close(got, want)


def test_distinct_rows_rebuild_the_rows_and_match_torch_unique():
    from gnnagg.bench.reproduce.sum_extrapolation import _distinct_rows
    torch.manual_seed(0)
    rows = torch.randint(0, 3, (200, 3)).float()
    rows[::7, 1] = -0.5  # ties in one column, not in the others
    distinct, inverse = _distinct_rows(rows)
    assert torch.equal(distinct[inverse], rows)
    expected = torch.unique(rows, dim=0)
    assert torch.equal(distinct, expected)  # sorted, each row once


def test_pna_multitask_graphs_have_their_sizes_and_no_isolated_node():
    graphs = pna_multitask_graphs([15, 20], 30, seed=1)
    assert [g.num_nodes for g in graphs] == [15] * 30 + [20] * 30
    for g in graphs:
        assert degree(g.edge_index[1], g.num_nodes).min() >= 1
        assert g.y_node.shape == (g.num_nodes, 3)


def test_toggling_flips_pairs_and_leaves_no_isolated_node():
    g = nx.complete_graph(6)  # no removal can isolate a node
    g.add_node(6)  # isolated
    before = {frozenset(e) for e in g.edges}
    _toggle_edges(g, 1, np.random.default_rng(0))
    after = {frozenset(e) for e in g.edges}
    assert all(d > 0 for _, d in g.degree)
    changed = before ^ after
    assert 1 <= len(changed) <= 2  # one flip, plus the isolated node's edge


def test_multitask_splits_are_the_pna_repositorys():
    """5,120 training graphs of 15-24 nodes; 640 validation and 1,280 test
    graphs of 15-19 (the repository's generator pairs their 5 counts with
    the first 5 sizes); each split's graphs have its sizes."""
    protocol = PNAMultitask().protocol(quick=False)
    totals = {split: len(sizes) * protocol["per_size"][split]
              for split, sizes in protocol["sizes"].items()}
    assert totals == {"train": 5120, "valid": 640, "test": 1280}
    assert protocol["sizes"]["train"] == list(range(15, 25))
    assert protocol["sizes"]["valid"] == protocol["sizes"]["test"] == \
        list(range(15, 20))


def test_multitask_labels_are_divided_by_their_training_maximum(tmp_path):
    item = PNAMultitask()
    protocol = item.protocol(quick=True)
    splits = item.data(protocol, tmp_path)
    node = torch.cat([g.y_node for g in splits["train"]]).abs().amax(0)
    graph = torch.cat([g.y_graph for g in splits["train"]]).abs().amax(0)
    assert torch.allclose(node, torch.ones(3))
    assert torch.allclose(graph[1:], torch.ones(2))  # diameter, radius
    batches = size_batches(splits["train"], 5, shuffle=True)
    assert all(len(set(b.to_data_list()[i].num_nodes
                       for i in range(b.num_graphs))) == 1 for b in batches)
    assert sum(b.num_graphs for b in batches) == len(splits["train"])
    for split, sizes in protocol["sizes"].items():
        assert sorted({g.num_nodes for g in splits[split]}) == sizes
        assert len(splits[split]) == len(sizes) * protocol["per_size"][split]


def test_lookup_layers_follow_the_paper():
    v2 = LookupNet(5, "gatv2", 1).conv
    assert v2.share_weights and v2.bias is None and not v2.add_self_loops
    assert LookupNet(5, "gat", 8).conv.add_self_loops
    assert LookupNet(5, "gat", 8).conv.heads == 8


def test_lookup_batches_are_the_data_loaders():
    """Unshuffled, the batches equal PyG's collated ones; shuffled, an
    epoch holds every graph once per pass; full batches share one
    edge_index tensor."""
    from torch_geometric.data import Batch
    from gnnagg.bench.reproduce.gatv2_lookup import LookupBatches
    from gnnagg.bench.synthetic import dictionary_lookup
    train, _ = dictionary_lookup(4)
    batches = list(LookupBatches(train, 5))
    assert len(batches) == -(-len(train) // 5)
    for number, (x, edge_index, y) in enumerate(batches):
        expected = Batch.from_data_list(train[5 * number:5 * number + 5])
        assert torch.equal(x, expected.x) and torch.equal(y, expected.y)
        assert torch.equal(edge_index, expected.edge_index)
    assert batches[0][1] is batches[1][1]
    seen = torch.cat([x[:, 1].view(-1, 8)[:, :4] for x, _, _ in
                      LookupBatches(train, 5, passes=3, shuffle=True)])
    values = torch.stack([graph.x[:4, 1] for graph in train])
    counts = (seen.unsqueeze(1) == values.unsqueeze(0)).all(-1).sum(0)
    assert counts.tolist() == [3] * len(train)  # permutations are distinct
    with pytest.raises(ValueError, match="graphs"):
        LookupBatches([], 5)


def test_lookup_net_is_the_papers_graph_model():
    from torch_geometric.data import Batch
    from gnnagg.bench.synthetic import dictionary_lookup
    batch = Batch.from_data_list(dictionary_lookup(4)[0][:3])
    net = LookupNet(4, "gatv2", 1).eval()
    assert net.out.bias is None
    # the paper's F.dropout(x) after the layer: p=0.5, on in evaluation too
    first, second = (net(batch.x, batch.edge_index) for _ in range(2))
    assert not torch.equal(first, second)
    steady = LookupNet(4, "gatv2", 1, always_dropout=False).eval()
    assert torch.equal(steady(batch.x, batch.edge_index),
                       steady(batch.x, batch.edge_index))
    # ReLU comes before the layer: embeddings summing below 0 give nothing
    # (GATv2 here has no bias)
    with torch.no_grad():
        steady.key.weight.fill_(-1.0)
        steady.value.weight.fill_(-1.0)
    assert bool((steady(batch.x, batch.edge_index) == 0).all())


def test_pna_molhiv_net_matches_the_paper_and_pyg():
    from ogb.utils.features import get_atom_feature_dims
    deg = torch.tensor([0, 10, 20, 5, 1])
    ours, theirs = (torch.manual_seed(0) and PNAMolhivNet(deg, backend=b)
                    for b in ("gnnagg", "pyg"))
    # the same seed draws the same weights, under the same names
    for (name, p), (other, q) in zip(ours.state_dict().items(),
                                     theirs.state_dict().items()):
        assert name == other and torch.equal(p, q), name
    # the paper's 326,081 with OGB's atom vocabulary of the time (173 rows)
    extra_rows = sum(get_atom_feature_dims()) - 173
    assert sum(p.numel() for p in ours.parameters()) == 326_081 + \
        80 * extra_rows
    graphs = [pna_graph(n, seed) for seed, n in enumerate([5, 9, 3])]
    batch = Batch.from_data_list(graphs)
    ours.eval(), theirs.eval()
    a = ours(batch.x, batch.edge_index, batch.batch)
    b = theirs(batch.x, batch.edge_index, batch.batch)
    assert torch.allclose(a, b, atol=1e-5)
    a.sum().backward(), b.sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-4), name


def pna_graph(n, seed):
    from torch_geometric.data import Data
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, 9), generator=gen)
    edges = torch.randint(0, n, (2, 2 * n), generator=gen)
    return Data(x=x, edge_index=torch.cat([edges, edges.flip(0)], 1),
                num_nodes=n)


def test_associativity_penalty():
    class Add(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    x = torch.randn(20, 4)
    index = torch.arange(20) // 5
    exact = LCMAggregation(4, 4, project=False, operator=Add(),
                           associativity_samples=16)
    exact(x, index)
    assert exact.associativity_loss.item() == pytest.approx(0, abs=1e-5)
    learned = LCMAggregation(4, 4, associativity_samples=16)
    learned(x, index)
    penalty = learned.associativity_loss
    assert penalty.item() > 0
    penalty.backward()
    assert learned.gru_cell.weight_ih.grad.abs().sum() > 0
    learned.eval()
    learned(x, index)
    assert learned.associativity_loss is None
    assert LCMAggregation(4, 4).associativity_loss is None
    assert "associativity_samples=16" in repr(exact)
    assert repr(LCMAggregation(4, 4)) == \
        "LCMAggregation(4, 4, project=True)"
    with pytest.raises(ValueError, match="associativity_samples"):
        LCMAggregation(4, 4, associativity_samples=-1)

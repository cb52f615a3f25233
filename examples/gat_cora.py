"""The GAT paper's transductive Cora experiment with gnnagg's layers.

    python examples/gat_cora.py --root data/Planetoid            # downloads
    python examples/gat_cora.py --raw-dir ../shared/datasets/planetoid

2 layers, 8 heads x 8 hidden, dropout 0.6, Adam lr 0.005, weight decay 5e-4,
early stopping (patience 100) on validation; mean +- std test accuracy over
``--runs`` seeds. The paper reports 83.0 +- 0.7 on Cora, 72.5 +- 0.7 on
CiteSeer. ``gnnagg planetoid`` runs the same protocol for every model.
"""
import argparse
import statistics

from gnnagg.bench.data import link_planetoid_raw
from gnnagg.bench.planetoid import load_planetoid, train_transductive
from gnnagg.bench.training import seed_everything
from gnnagg.models import GATPaperNet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Cora", choices=["Cora",
                                                              "CiteSeer"])
    parser.add_argument("--root", default="data/Planetoid")
    parser.add_argument("--raw-dir", help="directory holding the raw "
                        "ind.<name>.* files (no download)")
    parser.add_argument("--conv", default="gat", choices=["gat", "gatv2"])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.raw_dir:
        link_planetoid_raw(args.raw_dir, args.root, args.dataset)
    dataset = load_planetoid(args.dataset, args.root)
    accuracies = []
    for seed in range(args.runs):
        seed_everything(seed)
        model = GATPaperNet(dataset.num_features, 8, dataset.num_classes, heads=8,
                    out_heads=1, dropout=0.6, conv=args.conv)
        result = train_transductive(model, dataset[0])
        accuracies.append(100 * result["test"])
        print(f"seed {seed}: test {accuracies[-1]:.1f}% (best epoch "
              f"{result['best_epoch']})", flush=True)
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(f"{args.dataset} {args.conv}: {statistics.mean(accuracies):.1f} +- "
          f"{std:.1f} test accuracy over {args.runs} seeds")


if __name__ == "__main__":
    main()

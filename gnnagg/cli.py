"""``gnnagg``: compare aggregators on paper reproductions and leaderboards.

    gnnagg bench [--quick | --full] [--seed N]   embedded suite, no download
    gnnagg reproduce --list                      the papers' own protocols
    gnnagg reproduce gatv2-lookup [--quick] [--seeds N] [--out DIR]
    gnnagg planetoid Cora --model gat --runs 10 [--raw-dir DIR]
    gnnagg ogb ogbg-molhiv --model pna --runs 10 --root DIR
    gnnagg ogb ogbn-products --model gat --batch-size 1024 --fanout 15,10,5
    torchrun --nproc-per-node 2 -m gnnagg ogb ogbn-arxiv --model gat \\
        --batch-size 1024                        data-parallel, gloo/nccl
    gnnagg prepare ogbg-molhiv --from HIV.csv.gz --root DIR
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import torch

from .models import MODELS

#: what the ``bench`` extra installs for the commands
BENCH_MODULES = ("ogb", "rdkit", "networkx", "tqdm", "matplotlib", "numpy",
                 "scipy", "sklearn")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnnagg", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    sub = parser.add_subparsers(dest="command")

    bench = sub.add_parser("bench", help="the papers' synthetic tasks, "
                           "every layer kind side by side")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="a smoke run (seconds)")
    size.add_argument("--full", action="store_true",
                      help="larger sizes and longer training (about 9 "
                      "minutes on 2 cores; the default takes at most 3)")
    bench.add_argument("--out", default="results/bench",
                       help="folder of the runs (one sub-folder per preset "
                       "and seed)")
    bench.add_argument("--seed", type=_non_negative, default=0,
                       help="seed of the data and the models (default 0)")

    reproduce = sub.add_parser("reproduce", help="a paper's result under "
                               "its own protocol, ours beside theirs")
    reproduce.add_argument("name", nargs="?", help="see --list")
    reproduce.add_argument("--list", action="store_true",
                           help="list the reproductions")
    reproduce.add_argument("--quick", action="store_true",
                           help="a seconds-long smoke run of the protocol")
    reproduce.add_argument("--seeds", type=_positive,
                           help="seeds per model (default: the protocol's)")
    reproduce.add_argument("--models", type=_names,
                           help="comma-separated subset of the protocol's "
                           "models")
    reproduce.add_argument("--out", default="results/reproduce")
    reproduce.add_argument("--records", type=_existing_file,
                           help="results.jsonl of runs finished elsewhere "
                           "(e.g. the committed benchmarks/results/"
                           "NAME.jsonl), taken as done")
    reproduce.add_argument("--root", help="data folder (pna-molhiv: OGB's "
                           "root, default data/ogb; tangnn-cora: Planetoid's, "
                           "default data/Planetoid)")
    reproduce.add_argument("--raw-dir", help="tangnn-cora: folder with the "
                           "raw ind.cora.* files, linked into --root")

    planetoid = sub.add_parser("planetoid", help="GAT's transductive "
                               "protocol on Cora/CiteSeer/PubMed")
    planetoid.add_argument("dataset")
    planetoid.add_argument("--model", required=True,
                           help=f"one of {', '.join(MODELS)}")
    planetoid.add_argument("--runs", type=_positive, default=10)
    planetoid.add_argument("--epochs", type=_positive, default=1000)
    planetoid.add_argument("--patience", type=_positive, default=100)
    planetoid.add_argument("--root", default="data/Planetoid")
    planetoid.add_argument("--raw-dir", help="folder with the raw "
                           "ind.<name>.* files, linked into --root")
    planetoid.add_argument("--out", default="results/planetoid")
    planetoid.add_argument("--device", default="cpu")

    ogb = sub.add_parser("ogb", help="OGB leaderboards, OGB protocol")
    ogb.add_argument("dataset")
    ogb.add_argument("--model", required=True,
                     help=f"one of {', '.join(MODELS)}")
    ogb.add_argument("--runs", type=_positive, default=10)
    ogb.add_argument("--epochs", type=_positive)
    ogb.add_argument("--root", default="data/ogb")
    ogb.add_argument("--device", default="cpu")
    ogb.add_argument("--config", help="JSON hyperparameters (default: "
                     "the package's bench/configs/<dataset>.json)")
    ogb.add_argument("--out", default="results/ogb")
    ogb.add_argument("--batch-size", type=_positive, help="mini-batch size (node "
                     "tasks: NeighborLoader seeds; the global batch under "
                     "torchrun)")
    ogb.add_argument("--fanout", type=_fanout_list, help="neighbours sampled per "
                     "hop, one per layer, e.g. 15,10,5 (-1: all, as in "
                     "--fanout=-1,-1)")

    prepare = sub.add_parser("prepare", help="write a data set in OGB's "
                             "layout from a local copy")
    prepare.add_argument("dataset", choices=["ogbg-molhiv"])
    prepare.add_argument("--from", dest="source", required=True,
                         help="MoleculeNet's HIV.csv or HIV.csv.gz")
    prepare.add_argument("--root", default="data/ogb")
    return parser


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``, else an error
    saying it expected ``what``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected {what}, got {text!r}")
        return value
    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "a non-negative integer")


def _existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def _names(text: str) -> List[str]:
    names = [part for part in text.split(",") if part]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def _fanout_list(text: str) -> List[int]:
    """``--fanout`` as a list: comma-separated positive ints or -1."""
    try:
        fanout = [int(part) for part in text.split(",")]
        if any(n == 0 or n < -1 for n in fanout):
            raise ValueError
        return fanout
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers (or -1: all) such "
            f"as 15,10,5, got "
            f"{text!r}") from None


def _run(args) -> None:
    if args.command == "bench":
        from .bench.suite import run_suite
        run_suite(args.out, "quick" if args.quick else
                  "full" if args.full else "default", seed=args.seed)
    elif args.command == "reproduce":
        _reproduce(args)
    elif args.command == "planetoid":
        from .bench.data import link_planetoid_raw
        from .bench.planetoid import run_planetoid
        if args.raw_dir:
            link_planetoid_raw(args.raw_dir, args.root, args.dataset)
        store = run_planetoid(args.dataset, args.model, args.runs, args.root,
                              args.out, args.epochs, args.patience,
                              args.device)
        print((store.out_dir / "leaderboard.md").read_text())
    elif args.command == "ogb":
        from .bench.ogb import run_ogb
        overrides = {key: value for key, value in (
            ("batch_size", args.batch_size), ("fanout", args.fanout))
            if value is not None}
        store = run_ogb(args.dataset, args.model, args.runs, args.epochs,
                        args.root, args.out, args.device, args.config,
                        overrides)
        if int(os.environ.get("RANK", 0)) == 0:
            print((store.out_dir / "leaderboard.md").read_text())
    elif args.command == "prepare":
        from .bench.molhiv import prepare_molhiv
        print(f"wrote {prepare_molhiv(args.source, args.root)}")


def _reproduce(args) -> None:
    from .bench.reproduce import REPRODUCTIONS, get_reproduction, reproduce
    if args.list or args.name is None:
        for name in REPRODUCTIONS:
            item = get_reproduction(name)
            print(f"{name}\n    paper: {item.paper}\n    compares: "
                  f"{item.compares}")
        return
    options = {"root": args.root} if args.root else {}
    if args.raw_dir:
        options["raw_dir"] = args.raw_dir
    item = get_reproduction(args.name, **options)
    summary = reproduce(item, args.out, quick=args.quick, seeds=args.seeds,
                        models=args.models, records=args.records)
    folder = Path(args.out) / (args.name + ("-quick" if args.quick else ""))
    print((folder / "results.md").read_text())
    print(f"results: {folder / 'results.json'}; figure: "
          f"{folder / 'figure.png'}" if summary["ours"] else "")


def main(argv: Optional[List[str]] = None) -> int:
    # ogb asks PyPI for a newer version when imported; the commands do not
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    # long CPU trainings drift into denormal floats (weight decay on tiny
    # weights), which made a PNA epoch on ogbg-molhiv 6x slower; treat them
    # as zero
    torch.set_flush_denormal(True)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    out = getattr(args, "out", None)
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"--out {out} is a file; name a folder (it holds "
                     f"results.jsonl, the leaderboard and checkpoints)")
    try:
        _run(args)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in BENCH_MODULES:
            print(f"gnnagg {args.command}: error: this command needs "
                  f"{error.name}: pip install 'gnnagg[bench]'",
                  file=sys.stderr)
            return 2
        raise
    except (ValueError, FileNotFoundError) as error:
        print(f"gnnagg {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

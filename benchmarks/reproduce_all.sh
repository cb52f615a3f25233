#!/usr/bin/env bash
# Every reproduction at its full protocol, one after another, one thread each;
# with names as arguments, only those, in that order (two queues of disjoint
# names use two cores, about as long as each other:
# reproduce_all.sh sum-extrapolation pna-molhiv gatv2-lookup &
# reproduce_all.sh lcm-second-min pna-multitask &).
# Each command resumes where a stopped one left off, so rerunning this script
# after a stop continues the queue; runs whose records were committed
# (benchmarks/results/NAME.jsonl) are not run again on a fresh checkout.
# Results land in results/reproduce/NAME/;
# benchmarks/collect_reproductions.py copies them into benchmarks/results/.
#   nohup benchmarks/reproduce_all.sh [NAME...] > results/reproduce/queue.log 2>&1 &
# The body is one block, read whole before it runs, so that editing this
# file while a queue runs cannot change what that queue does next.
{
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OUTDATED_IGNORE=1
GNNAGG=${GNNAGG:-.venv/bin/gnnagg}
OUT=${OUT:-results/reproduce}
SHARED=${SHARED:-../shared/datasets}
COMMITTED=benchmarks/results

# gnnagg reproduce NAME ARGS..., adopting the committed records of NAME's
# finished runs (collect_reproductions.py writes them) so that a fresh
# checkout runs only what is missing
reproduce() {
    local name=$1; shift
    local records=()
    [ -f "$COMMITTED/$name.jsonl" ] && records=(--records "$COMMITTED/$name.jsonl")
    for checkpoint in "$COMMITTED/checkpoints/$name"/*.pt; do
        [ -f "$checkpoint" ] || continue
        mkdir -p "$OUT/$name/checkpoints"
        cp -n "$checkpoint" "$OUT/$name/checkpoints/"
    done
    "$GNNAGG" reproduce "$name" --out "$OUT" "${records[@]}" "$@"
}

NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(tangnn-cora gatv2-lookup lcm-second-min pna-multitask
                                sum-extrapolation pna-molhiv)
for name in "${NAMES[@]}"; do
    case $name in
        tangnn-cora) reproduce tangnn-cora --root data/Planetoid --raw-dir "$SHARED/planetoid" ;;
        pna-molhiv)  # the issue's 10 seeds; OGB's files built from MoleculeNet's CSV
            [ -d data/ogb/ogbg_molhiv ] || "$GNNAGG" prepare ogbg-molhiv \
                --from "$SHARED/moleculenet/HIV.csv.gz" --root data/ogb
            reproduce pna-molhiv --root data/ogb --seeds 10 ;;
        *) reproduce "$name" ;;
    esac
done
exit
}

#!/usr/bin/env bash
# Every reproduction at its full protocol, one after another, one thread each
# (the machine has two cores: this queue on one, pna-molhiv on the other).
# Each command resumes where a stopped one left off, so rerunning this script
# after a stop continues the queue; runs whose records were committed
# (benchmarks/results/NAME.jsonl) are not run again on a fresh checkout.
# Results land in results/reproduce/NAME/;
# benchmarks/collect_reproductions.py copies them into benchmarks/results/.
#   nohup benchmarks/reproduce_all.sh > results/reproduce/queue.log 2>&1 &
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
    "$GNNAGG" reproduce "$name" --out "$OUT" "${records[@]}" "$@"
}

reproduce tangnn-cora --root data/Planetoid --raw-dir "$SHARED/planetoid"
reproduce gatv2-lookup
reproduce lcm-second-min
reproduce pna-multitask
reproduce sum-extrapolation

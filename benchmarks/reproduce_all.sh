#!/usr/bin/env bash
# Every reproduction at its full protocol, one after another, one thread each
# (the machine has two cores: this queue on one, pna-molhiv on the other).
# Each command resumes where a stopped one left off, so rerunning this script
# after a stop continues the queue. Results land in results/reproduce/NAME/;
# benchmarks/collect_reproductions.py copies them into benchmarks/results/.
#   nohup benchmarks/reproduce_all.sh > results/reproduce/queue.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OUTDATED_IGNORE=1
GNNAGG=${GNNAGG:-.venv/bin/gnnagg}
OUT=${OUT:-results/reproduce}
SHARED=${SHARED:-../shared/datasets}
"$GNNAGG" reproduce tangnn-cora --out "$OUT" --root data/Planetoid \
    --raw-dir "$SHARED/planetoid"
"$GNNAGG" reproduce gatv2-lookup --out "$OUT"
"$GNNAGG" reproduce lcm-second-min --out "$OUT"
"$GNNAGG" reproduce pna-multitask --out "$OUT"
"$GNNAGG" reproduce sum-extrapolation --out "$OUT"

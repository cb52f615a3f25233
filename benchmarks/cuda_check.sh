#!/usr/bin/env bash
# Every check that needs a CUDA device, in one go (about 5 minutes on an
# H200): tests/test_cuda.py, speed.py's rows against PyG on CUDA (the
# README's GPU table) and where the three layers' time goes. Nothing is
# installed: the source tree goes on the import path of a python3 that has
# torch with CUDA and torch-geometric. Logs and rows go to OUT (at most 6
# files); a failing step does not stop the next.
#   benchmarks/cuda_check.sh [OUT]        # default: $OUT, else results/cuda
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-results/cuda}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 \
    OUTDATED_IGNORE=1
python3 -m pytest -q -p no:cacheprovider -rfEx tests/test_cuda.py \
    > "$out/test_cuda.log" 2>&1
tail -n 8 "$out/test_cuda.log"
speed() {  # NAME, then speed.py's arguments
    local name=$1; shift
    python3 benchmarks/speed.py --device cuda --json "$out/speed-$name.json" \
        "$@" 2>> "$out/speed.log" | tee -a "$out/speed.log"
}
speed layers-arxiv --graphs arxiv --repeats 20 --rounds 3 --layers \
    GATConv,GATv2Conv,PNAConv,TopMAttentionAggregation,LCMAggregation
speed layers-molecules --graphs molecules --repeats 30 --rounds 3 \
    --layers GATConv,GATv2Conv,PNAConv
speed aggregations-arxiv --graphs arxiv --repeats 20 --rounds 2 --layers \
    aggr=sum,aggr=mean,aggr=min,aggr=max,aggr=var,aggr=std,aggr=softmax,aggr=powermean,aggr=multi
python3 benchmarks/where_time_goes.py --device cuda \
    > "$out/where_time_goes.txt" 2>&1
grep -A 6 "^=====" "$out/where_time_goes.txt" | cut -c1-160

#!/bin/bash
# issue 23: BPE GPT variants (more compute per token) beside the char GPT, 8 at once on one GPU
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch;print(torch.__version__)" | tee -a $OUT/machine.txt
git log -1 --format=%h >> $OUT/machine.txt
run() { mkdir -p /tmp/h-$1; LMLADDER_HOME=/tmp/h-$1 timeout 560 python .device/explore.py "$@" > $OUT/$1.json 2> $OUT/$1.log; echo "$1 rc=$?"; }
run bpe-base bpe '{}' &
run bpe-w768 bpe '{"model": {"n_embd": 768, "n_head": 12}}' &
run bpe-w640 bpe '{"model": {"n_embd": 640, "n_head": 10}}' &
run bpe-loop2 bpe '{}' 2 &
run bpe-l8 bpe '{"model": {"n_layer": 8}}' &
run bpe-ctx512 bpe '{"model": {"block_size": 512}, "optim": {"batch_size": 32}}' &
run char-base char '{}' &
run char-loop2 char '{}' 2 &
wait
for f in $OUT/*/results.md; do echo "== $f"; grep -E "gpt" $f; done
grep -h -E "stopped|best" $OUT/*.log | tail -20

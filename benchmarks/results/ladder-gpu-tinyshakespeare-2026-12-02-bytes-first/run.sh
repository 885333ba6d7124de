#!/bin/bash
# issue 23: the whole gpu ladder with the BPE GPTs learning bytes first (token_dropout_steps), one more BPE rung over 2,000 steps
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeO PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
mkdir -p $LMLADDER_HOME
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
/usr/bin/time -v timeout 545 python -m lmladder bench tinyshakespeare --profile gpu --ladder .device/ladder_final2.toml --out /tmp/ladderO --json > /tmp/ladderO.json 2> $OUT/bench.log
echo "bench rc=$?"; cat /tmp/ladderO/results.md 2>/dev/null
cp /tmp/ladderO/results.md /tmp/ladderO/results.json /tmp/ladderO/curves.png /tmp/ladderO/ladder.png /tmp/ladderO/manifest.json $OUT/ 2>/dev/null
grep "Elapsed" $OUT/bench.log

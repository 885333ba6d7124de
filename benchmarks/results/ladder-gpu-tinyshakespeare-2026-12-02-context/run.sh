#!/bin/bash
# issue 23: the whole gpu ladder with the BPE GPTs at the char GPT's 512 context and batch 32, one more rung: 512-token BPE
# .device/ladder_final3.toml is this folder's ladder.toml
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeP PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
mkdir -p $LMLADDER_HOME
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
/usr/bin/time -v timeout 545 python -m lmladder bench tinyshakespeare --profile gpu --ladder .device/ladder_final3.toml --out /tmp/ladderP --json > /tmp/ladderP.json 2> $OUT/bench.log
echo "bench rc=$?"; cat /tmp/ladderP/results.md 2>/dev/null
cp /tmp/ladderP/results.md /tmp/ladderP/results.json /tmp/ladderP/curves.png /tmp/ladderP/ladder.png /tmp/ladderP/manifest.json $OUT/ 2>/dev/null
grep "Elapsed" $OUT/bench.log

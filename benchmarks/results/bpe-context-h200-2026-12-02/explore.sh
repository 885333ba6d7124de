#!/bin/bash
# issue 23: 1,024-token BPE GPT variants over the gpu profile of 6c160b2 (bytes first, a 256-token context at batch 64),
# 5 at once on one GPU; `explore.sh 1` and `explore.sh 2` are the session's two calls (.device/exploreD.sh, exploreE.sh);
# explore2.py is ../bpe-curriculum-h200-2026-12-02/explore2.py (one ladder rung with settings over the profile)
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch;print(torch.__version__)" | tee -a $OUT/machine.txt; date -u | tee -a $OUT/machine.txt
run() { mkdir -p /tmp/h-$1; LMLADDER_HOME=/tmp/h-$1 timeout 520 python .device/explore2.py "$@" > /tmp/x-$1.json 2> /tmp/x-$1.log; echo "$1 rc=$?"; }
if [ "${1:-1}" = 1 ]; then
  run base bpe '{"bpe_vocab": 1024}' &
  run ctx512-b32 bpe '{"bpe_vocab": 1024, "model": {"block_size": 512}, "optim": {"batch_size": 32}}' &
  run ctx512-b64 bpe '{"bpe_vocab": 1024, "model": {"block_size": 512}}' &
  run td-final0.2 bpe '{"bpe_vocab": 1024, "data": {"token_dropout": 0.2}}' &
  run loop3 bpe '{"bpe_vocab": 1024, "model": {"n_loop": 3}}' &
else
  run ctx1024-b16 bpe '{"bpe_vocab": 1024, "model": {"block_size": 1024}, "optim": {"batch_size": 16}}' &
  run ctx1024-b32 bpe '{"bpe_vocab": 1024, "model": {"block_size": 1024}}' &
  run ctx512-td0.2 bpe '{"bpe_vocab": 1024, "model": {"block_size": 512}, "optim": {"batch_size": 32}, "data": {"token_dropout": 0.2}}' &
  run ctx512-wd4 bpe '{"bpe_vocab": 1024, "model": {"block_size": 512}, "optim": {"batch_size": 32, "weight_decay": 4.0}}' &
  run ctx512-v512 bpe '{"bpe_vocab": 512, "model": {"block_size": 512}, "optim": {"batch_size": 32}}' &
fi
wait
date -u | tee -a $OUT/machine.txt
python - <<'PY' | tee $OUT/summary.txt
import json, glob, os
for f in sorted(glob.glob("/tmp/x-*.json")):
    try:
        r = json.load(open(f))["results"][0]
    except Exception as e:
        print(os.path.basename(f), "failed", e); continue
    c = r.get("curve") or []
    best = min(c, key=lambda p: p[1]) if c else (None, None)
    print(f"{os.path.basename(f)[2:-5]:<16} test {r['bits_per_char']:.4f}  best val {best[1]}  at {best[0]}  train {r['train_seconds']:.0f}s")
PY
tar czf $OUT/runs.tgz /tmp/x-*.json /tmp/x-*.log 2>/dev/null

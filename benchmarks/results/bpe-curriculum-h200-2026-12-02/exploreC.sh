#!/bin/bash
# issue 23: BPE variants under the gpu profile (n_loop 2): a token-dropout schedule (char-level first),
# more heads, more dropout, more input noise; 5 at once on one GPU
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch;print(torch.__version__)" | tee -a $OUT/machine.txt; date -u | tee -a $OUT/machine.txt
run() { mkdir -p /tmp/h-$1; LMLADDER_HOME=/tmp/h-$1 timeout 540 python .device/explore2.py "$@" > /tmp/x-$1.json 2> /tmp/x-$1.log; echo "$1 rc=$?"; }
run td-1-to-0.1 bpe '{"_td_schedule": [1.0, 0.1, 1000]}' &
run td-0.5-to-0.1 bpe '{"_td_schedule": [0.5, 0.1, 2000]}' &
run heads16 bpe '{"model": {"n_head": 16}}' &
run dropout0.3 bpe '{"model": {"dropout": 0.3}}' &
run noise0.1 bpe '{"data": {"input_noise": 0.1}}' &
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

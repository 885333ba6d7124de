#!/bin/bash
# issue 23: GPTs whose blocks are gone through twice or three times (model.n_loop), char and BPE,
# 4 at once on one GPU; then the GPU-only tests (CUDA-graph decoding of looped GPTs)
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch;print(torch.__version__)" | tee -a $OUT/machine.txt
run() { mkdir -p /tmp/h-$1; LMLADDER_HOME=/tmp/h-$1 timeout 470 python .device/explore.py "$@" > /tmp/$1.json 2> /tmp/$1.log; echo "$1 rc=$?"; }
run char-loop2 char '{"model": {"n_loop": 2}}' &
run bpe-loop2 bpe '{"model": {"n_loop": 2}}' &
run char-loop3 char '{"model": {"n_loop": 3}}' &
run bpe-loop3 bpe '{"model": {"n_loop": 3}}' &
wait
python - <<'PY' | tee $OUT/summary.txt
import json, glob, os
for f in sorted(glob.glob("/tmp/*-loop*.json")):
    try:
        r = json.load(open(f))["results"][0]
    except Exception as e:
        print(os.path.basename(f), "failed", e); continue
    c = r.get("curve") or []
    best = min(c, key=lambda p: p[1]) if c else (None, None)
    print(f"{r['rung']:<14} test {r['bits_per_char']:.4f}  best val {best[1]}  at {best[0]}  train {r['train_seconds']:.0f}s  params {r['size']}")
PY
mkdir -p $OUT/runs; for f in /tmp/*-loop*.json; do cp $f $OUT/runs/; done
tar czf $OUT/logs.tgz /tmp/*-loop*.log $OUT/runs 2>/dev/null
rm -rf $OUT/runs
timeout 100 python -m pytest -q -rs tests/test_decode_cuda.py -p no:cacheprovider 2>&1 | tail -5 | tee $OUT/pytest-cuda.txt

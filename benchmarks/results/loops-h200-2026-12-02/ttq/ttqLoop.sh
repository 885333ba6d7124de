#!/bin/bash
# issue 23: the 60 s recipe with its blocks gone through twice, beside the recipe as it is (one run each)
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch, lmladder.train" >/dev/null 2>&1
timeout 330 python benchmarks/bench_gpu.py --only ttq --recipes muon-l6-do0.2-wd3-ctx512-noise0.05,muon-l6-do0.2-wd3-ctx512-noise0.05-loop2 2>&1 | tail -12

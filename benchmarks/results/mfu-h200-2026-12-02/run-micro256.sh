#!/bin/bash
# issue 23 secondary: gpt2-124m at micro-batch 256 on the H200 (not measured on 2026-12-02's first try)
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeM PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
mkdir -p $LMLADDER_HOME $OUT/b
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a $OUT/machine.txt
date -u | tee -a $OUT/machine.txt
OUT=$OUT/b timeout 240 python benchmarks/bench_gpu.py --only mfu --micro 256 --mfu-variants base 2>&1 | tail -5 | cut -c1-600
echo "rc=$?"; date -u

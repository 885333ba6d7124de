#!/bin/bash
# issue 23 secondary: gpt2-124m MFU variants on the H200 (cudnn, autotune, micro 256), then a profile of the step
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeM PYTHONPATH=$PWD
unset PYTHONDONTWRITEBYTECODE
mkdir -p $LMLADDER_HOME $OUT/a $OUT/b $OUT/c
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a $OUT/machine.txt
date -u | tee -a $OUT/machine.txt
OUT=$OUT/a timeout 330 python benchmarks/bench_gpu.py --only mfu --mfu-variants base,cudnn,autotune-no-graph 2>&1 | grep "^gpt2-124m" | cut -c1-400
OUT=$OUT/b timeout 150 python benchmarks/bench_gpu.py --only mfu --micro 256 --mfu-variants base 2>&1 | grep "^gpt2-124m" | cut -c1-400
OUT=$OUT/c timeout 90 python benchmarks/profile_step.py --preset gpt2-124m --micro 128 2>&1 | tail -25
date -u

#!/bin/bash
# issue 23: the FP8 head: a micro-benchmark, then gpt2-124m base against --head-loss fp8, alternated
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeG PYTHONPATH=$PWD
mkdir -p $LMLADDER_HOME $OUT/b $OUT/p
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a $OUT/machine.txt
date -u | tee -a $OUT/machine.txt
timeout 120 python .device/fp8head.py > $OUT/fp8head.txt 2>&1; rc=$?
tail -40 $OUT/fp8head.txt | cut -c1-400; echo "rc=$rc"; date -u
[ $rc = 0 ] || exit 3
OUT=$OUT/b timeout 330 python benchmarks/bench_gpu.py --only mfu --mfu-variants base,fp8-head --mfu-repeats 2 2>&1 | tail -8 | cut -c1-700
echo "rc=$?"; date -u
OUT=$OUT/p timeout 80 python benchmarks/profile_step.py --preset gpt2-124m --micro 128 --head-loss fp8 2>&1 | tail -12 | cut -c1-300
echo "rc=$?"; date -u

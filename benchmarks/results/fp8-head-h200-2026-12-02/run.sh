#!/bin/bash
# issue 23: at the committed code, the GPU tests, then gpt2-124m base against --head-loss fp8, alternated
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeI PYTHONPATH=$PWD
mkdir -p $LMLADDER_HOME $OUT/b
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a $OUT/machine.txt
date -u | tee -a $OUT/machine.txt
timeout 120 python -m pytest -p no:cacheprovider -q -rs tests/test_headloss_fp8.py tests/test_headloss.py tests/test_fp8.py \
  tests/test_fusedmlp.py > $OUT/pytest-cuda.txt 2>&1; echo "pytest rc=$?"
grep -E "passed|failed|FAILED|Error" $OUT/pytest-cuda.txt | tail -8 | cut -c1-300
date -u
OUT=$OUT/b timeout 330 python benchmarks/bench_gpu.py --only mfu --mfu-variants base,fp8-head --mfu-repeats 2 2>&1 | tail -8 | cut -c1-700
echo "rc=$?"; date -u

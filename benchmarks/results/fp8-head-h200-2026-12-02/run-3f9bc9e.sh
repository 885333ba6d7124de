#!/bin/bash
# issue 23: at 3f9bc9e, the GPU tests; is the fp8-head step recorded as a CUDA graph; base against fp8-head once each
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeJ PYTHONPATH=$PWD
mkdir -p $LMLADDER_HOME $OUT/b
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a $OUT/machine.txt
date -u | tee -a $OUT/machine.txt
timeout 100 python -m pytest -p no:cacheprovider -rs tests/test_headloss_fp8.py tests/test_headloss.py tests/test_fp8.py \
  tests/test_fusedmlp.py > $OUT/pytest-cuda.txt 2>&1; echo "pytest rc=$?"
grep -E "passed|failed|FAILED|Error" $OUT/pytest-cuda.txt | tail -8 | cut -c1-300
date -u
timeout 120 python -m lmladder train tinyshakespeare --preset gpt2-124m --tokenizer char --vocab-size 50304 --split 0.9,0.1,0 \
  --batch-size 128 --max-steps 30 --eval-interval 0 --checkpoint-interval 0 --log-interval 5 --head-loss fp8 \
  --out /tmp/graphcheck > $OUT/graphcheck.out 2> $OUT/graphcheck.err; echo "graph check rc=$?"
grep -ci "could not be recorded" $OUT/graphcheck.err; grep -i "cuda graph\|record" $OUT/graphcheck.err | head -3 | cut -c1-300
tail -2 /tmp/graphcheck/metrics.jsonl | cut -c1-300; cp /tmp/graphcheck/metrics.jsonl $OUT/graphcheck-metrics.jsonl
date -u
OUT=$OUT/b timeout 200 python benchmarks/bench_gpu.py --only mfu --mfu-variants base,fp8-head 2>&1 | tail -6 | cut -c1-500
echo "rc=$?"; date -u

#!/bin/bash
# issue 23: does the loss hold with --head-loss fp8? gpt2-124m on gutenberg-en with a 16,384-token BPE,
# 400 steps of 32 x 1,024 tokens, the same seed and batches; then the GPU tests of the kernels
set -u
export LMLADDER_MIRROR=$PWD/.device/corpora LMLADDER_OFFLINE=1 LMLADDER_NO_PROGRESS=1 LMLADDER_HOME=/tmp/lmhomeH PYTHONPATH=$PWD
mkdir -p $LMLADDER_HOME $OUT/loss
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/machine.txt
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a $OUT/machine.txt
date -u | tee -a $OUT/machine.txt
for v in fused fp8; do
  timeout 170 python -m lmladder train gutenberg-en --preset gpt2-124m --tokenizer .device/bpe16k --batch-size 32 \
    --micro-batch-size 32 --max-steps 400 --warmup-steps 50 --eval-interval 50 --checkpoint-interval 0 --log-interval 25 \
    --head-loss $v --out /tmp/loss-$v --json > $OUT/loss/$v.json 2> $OUT/loss/$v.err; echo "$v rc=$?"
  cp /tmp/loss-$v/metrics.jsonl $OUT/loss/$v-metrics.jsonl 2>/dev/null
  python - $OUT/loss/$v-metrics.jsonl $OUT/loss/$v.json <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(" val", [(r["step"], round(r["val_loss"], 4)) for r in rows if "val_loss" in r])
print(" train", [(r["step"], round(r["train_loss"], 3)) for r in rows if "train_loss" in r][-4:],
      "tok/s", round(sorted(r["tokens_per_s"] for r in rows if "tokens_per_s" in r)[-5]))
d = json.load(open(sys.argv[2])); print(" test bits/char", d["test"]["bits_per_char"], "best val", d["best_val_loss"])
PY
  date -u
done
timeout 150 python -m pytest -p no:cacheprovider -q tests/test_headloss_fp8.py tests/test_headloss.py tests/test_fp8.py \
  tests/test_fusedmlp.py 2>&1 | tail -5 | tee $OUT/pytest-cuda.txt
date -u

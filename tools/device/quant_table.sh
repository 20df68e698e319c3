#!/usr/bin/env bash
# The calibration issue's accuracy table on the GPU machine: builds benchmarks/native/quant_table against the library
# that tools/device/gpu_check.sh built (FQ_GPU_BUILD, default /tmp/fq-gpu-build), writes the evaluation texts, and
# runs the table for a staged model (tools/device/stage_model.sh). Output: $OUT/quant_table.jsonl (one object per
# row and text), $OUT/quant_table.md, $OUT/quant_table.log, and $OUT/artifacts.tgz (the artifacts without GPTQ
# codes; those with them hold one byte per weight and stay in $FQ_TABLE_WORK).
#
#   tools/device/quant_table.sh MODEL.gguf [quant_table options, e.g. --rows fp,rtn --bits w4a4kv4]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/quant-table-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-gpu-build}"
WORK="${FQ_TABLE_WORK:-/tmp/fq-table}"
model="$1"
shift
mkdir -p "$OUT" "$WORK"
[ -f "$BUILD/libflatquant.so" ] || { echo "no $BUILD/libflatquant.so: run tools/device/gpu_check.sh first" >&2; exit 1; }
g++ -std=c++17 -O2 -Wall -Wextra -I"$ROOT/native/include" "$ROOT/benchmarks/native/quant_table.cpp" \
    -L"$BUILD" -lflatquant -Wl,-rpath,"$BUILD" -o "$WORK/quant_table"
python3 "$ROOT/tools/device/make_eval_texts.py" --data "$ROOT/data" --out "$WORK/texts" > "$OUT/texts.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/gpu.txt"
"$WORK/quant_table" --model "$model" --device 0 --calib "$WORK/texts/wikitext2-validation.txt" \
    --eval wikitext2="$WORK/texts/wikitext2-test.txt" --eval c4="$WORK/texts/c4.txt" --out-dir "$WORK" "$@" \
    > "$WORK/table.out" 2> "$OUT/quant_table.log" || { tail -30 "$OUT/quant_table.log"; exit 1; }
grep '^{' "$WORK/table.out" > "$OUT/quant_table.jsonl"
sed -n '/^| row/,$p' "$WORK/table.out" > "$OUT/quant_table.md"
cat "$OUT/quant_table.md"
# The artifacts without GPTQ codes are small (transforms and clip logits); GPTQ ones hold a byte per weight.
small=()
for a in "$WORK"/*.safetensors; do
    [ -f "$a" ] && [ "$(stat -c %s "$a")" -lt 8000000 ] && small+=("$(basename "$a")")
done
[ ${#small[@]} -gt 0 ] && tar czf "$OUT/artifacts.tgz" -C "$WORK" "${small[@]}"

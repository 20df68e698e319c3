#!/usr/bin/env bash
# The whole-model GPU engine on a GPU machine, in one call: builds (tools/device/gpu_check.sh, which also runs the
# engine's and the W4A4 layer's tests), calibrates FlatQuant W4A4KV4 on the staged model through the C ABI
# (benchmarks/native/quant_table.cpp, which also prints the fake-quantized perplexity), then runs bench_engine:
# fake-quantized vs real W4A4 perplexity and W4A4 vs FP16 tokens/s. Logs and the artifact go to $OUT.
#
#   tools/device/engine_check.sh MODEL.gguf [ARTIFACT]     (ARTIFACT given: no calibration)
# Environment: as gpu_check.sh (FQ_CUTLASS_DIR, FQ_CUDA_GENCODE); BENCH_ARGS adds bench_engine arguments.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/engine-check-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-gpu-build}"
MODEL="$1"
ARTIFACT="${2:-}"
mkdir -p "$OUT"
bash "$ROOT/tools/device/gpu_check.sh" 'CudaDecoderEngine|CudaW4A4Layer' | tail -15
TEXTS=/tmp/fq-texts
python3 "$ROOT/tools/device/make_eval_texts.py" --data "$ROOT/data" --out "$TEXTS" > /dev/null
if [ -z "$ARTIFACT" ]; then
    LIBDIR="$(dirname "$(find "$BUILD" -name libflatquant.so | head -1)")"
    g++ -std=c++17 -O2 -Inative/include "$ROOT/benchmarks/native/quant_table.cpp" -L"$LIBDIR" -lflatquant \
        -Wl,-rpath,"$LIBDIR" -o /tmp/quant_table
    mkdir -p "$OUT/artifacts"
    /tmp/quant_table --model "$MODEL" --calib "$TEXTS/wikitext2-validation.txt" \
        --eval wikitext2="$TEXTS/wikitext2-test.txt" --bits w4a4kv4 --rows flatquant --device 0 \
        --out-dir "$OUT/artifacts" > "$OUT/quant_table.json" 2> "$OUT/quant_table.log"
    tail -5 "$OUT/quant_table.json"
    ARTIFACT="$(ls "$OUT"/artifacts/*.safetensors | head -1)"
fi
BENCH="$(find "$BUILD" -name bench_engine -type f | head -1)"
"$BENCH" --model "$MODEL" --artifact "$ARTIFACT" --text "$TEXTS/wikitext2-test.txt" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_engine.txt"

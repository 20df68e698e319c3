#!/usr/bin/env bash
# The decoder layer on the GPU machine in one call: builds the layer's tests (4-bit KV cache and attention against
# their CPU twin, the W4A4 and FP16 layers against a float64 reference, and the fused transform + quantization
# kernel's own tests, since the layer tunes it) and benchmarks/native/bench_decoder_layer.cu,
# runs both, and writes $OUT/decoder_layer.md (device, test summary, benchmark tables) plus the logs.
#
#   OUT=<dir> tools/device/bench_layer.sh [--quick]
#
# Build: nvcc directly (no CMake), sm_90a only, the CUDA sources the layer uses plus their CPU twins; needs the CUTLASS
# headers in .device/cutlass (tools/device/bench_gemm.sh --stage) and GoogleTest sources in .device/googletest, both
# carried. cuBLAS comes from the toolkit next to nvcc (bench only).
# FQ_LAYER_PREBUILT=<dir>: skip the build and run <dir>/layer_tests and <dir>/bench_decoder_layer instead (binaries
# built elsewhere with the same commands, e.g. to save time on the GPU machine; they need cuBLAS 13 at run time).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/layer-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-layer-build}"
QUICK="${1:-}"
mkdir -p "$OUT" "$BUILD"
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
CUDA_HOME_DIR="$(cd "$(dirname "$NVCC")/.." && pwd)"
REPORT="$OUT/decoder_layer.md"
cd "$ROOT"

{
    echo "# Decoder layer: tests and benchmark"
    echo
    rev="$(git rev-parse --short HEAD 2>/dev/null || echo "no git")"
    echo "Reproduce: \`OUT=<dir> tools/device/bench_layer.sh $QUICK\` (at $rev + working tree)," \
        "$(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader)"
    echo "nvcc: $("$NVCC" --version | tail -1)"
    echo
} > "$REPORT"

CUDA_SRCS="native/src/cuda/kv4_attention.cu native/src/cuda/layer_ops_f16.cu native/src/cuda/w4a4_layer.cu
  native/src/cuda/kron_quant.cu native/src/cuda/head_transforms.cu native/src/cuda/w4a4_gemm_sm80.cu
  native/src/cuda/w4a4_gemm_sm90.cu native/src/cuda/cuda_backend.cpp native/src/core/error.cpp"
REF_SRCS="native/src/cpu/kv4_attention_ref.cpp native/src/cpu/dequant_ref.cpp native/src/cpu/kron_quant_ref.cpp
  native/src/cpu/w4a4_gemm_ref.cpp native/src/quant/fake_quant.cpp native/src/quant/kron.cpp"
TEST_SRCS="native/tests/test_cuda_kv4_attention.cpp native/tests/test_cuda_w4a4_layer.cpp
  native/tests/test_kv4_attention_ref.cpp native/tests/test_cuda_kron_quant.cpp native/tests/test_kron_quant_ref.cpp"
FLAGS=(-std=c++17 -O3 -DNDEBUG -DFQ_HAVE_CUDA=1 -DFQ_HAVE_CUTLASS=1 -Inative/include -Inative/src
       -isystem .device/cutlass/include -isystem .device/cutlass/tools/util/include --expt-relaxed-constexpr
       -gencode=arch=compute_90a,code=sm_90a)

status=0
if [ -n "${FQ_LAYER_PREBUILT:-}" ]; then
    TESTS="$FQ_LAYER_PREBUILT/layer_tests"
    BENCH="$FQ_LAYER_PREBUILT/bench_decoder_layer"
    echo "Build: prebuilt binaries from $FQ_LAYER_PREBUILT" >> "$REPORT"
else
    start=$(date +%s)
    GT="$ROOT/.device/googletest/googletest"
    # One object per source, in parallel (the CUTLASS file dominates).
    objs=()
    for src in $CUDA_SRCS $REF_SRCS; do
        obj="$BUILD/$(basename "$src").o"
        objs+=("$obj")
        "$NVCC" "${FLAGS[@]}" -x "$([[ $src == *.cu ]] && echo cu || echo c++)" -c "$src" -o "$obj" \
            > "$BUILD/$(basename "$src").log" 2>&1 &
    done
    wait
    cat "$BUILD"/*.log > "$OUT/build.log"
    TESTS="$BUILD/layer_tests"
    BENCH="$BUILD/bench_decoder_layer"
    "$NVCC" "${FLAGS[@]}" -I"$GT/include" -I"$GT" $TEST_SRCS "$GT/src/gtest-all.cc" "$GT/src/gtest_main.cc" \
        "${objs[@]}" -Xcompiler -pthread -o "$TESTS" >> "$OUT/build.log" 2>&1 || status=1
    "$NVCC" "${FLAGS[@]}" benchmarks/native/bench_decoder_layer.cu "${objs[@]}" -L"$CUDA_HOME_DIR/lib64" \
        -Xlinker -rpath -Xlinker "$CUDA_HOME_DIR/lib64" -lcublas -o "$BENCH" >> "$OUT/build.log" 2>&1 || status=1
    echo "Build: direct nvcc, sm_90a, $(( $(date +%s) - start )) s" >> "$REPORT"
    if [ "$status" != 0 ]; then
        grep -E "error|undefined reference" "$OUT/build.log" | head -20 | tee -a "$REPORT"
        exit 1
    fi
fi
export LD_LIBRARY_PATH="$CUDA_HOME_DIR/lib64:${LD_LIBRARY_PATH:-}"

{
    echo
    echo "## Tests"
    echo '```'
} >> "$REPORT"
"$TESTS" > "$OUT/tests.log" 2>&1 || status=1
grep -E "^\[ (kv4_attention|w4a4_layer|f16_layer|kron_quant) \]|^\[  (PASSED|FAILED) +\]" "$OUT/tests.log" \
    >> "$REPORT" || true
echo '```' >> "$REPORT"

start=$(date +%s)
echo >> "$REPORT"
"$BENCH" --iterations=0 >> "$OUT/bench.log" 2>&1 || status=1
"$BENCH" $QUICK >> "$REPORT" 2>> "$OUT/bench.log" || status=1
echo >> "$REPORT"
echo "(benchmark ran in $(( $(date +%s) - start )) s)" >> "$REPORT"
cat "$REPORT"
exit "$status"

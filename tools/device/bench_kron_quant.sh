#!/usr/bin/env bash
# The fused transform + quantization kernel on the GPU machine, in one call: builds the project with the CUDA backend,
# runs its tests (ctest -R KronQuant, then the GPU ones once more from the compute_86 PTX under
# CUDA_FORCE_PTX_JIT=1, which is the code an RTX 3090 runs), then builds and runs benchmarks/native/bench_kron_quant.cu.
# Everything lands in $OUT: kron_quant.md (device, test summary, benchmark tables) and the logs.
#
#   OUT=<dir> tools/device/bench_kron_quant.sh [--quick]
#
# Needs nvcc (PATH or /usr/local/cuda/bin/nvcc) with cuBLAS, and GoogleTest sources in .device/googletest (copy
# /usr/src/googletest there; .device/ is git-ignored, so it has to be carried). No network. If the full test
# binary does not build (another part of the tree mid-change), the kernel's own tests are built without CMake.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/kron-quant-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-kq-build}"
QUICK="${1:-}"
mkdir -p "$OUT" "$BUILD"
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
CUDA_HOME_DIR="$(cd "$(dirname "$NVCC")/.." && pwd)"
REPORT="$OUT/kron_quant.md"
JOBS="$(nproc)"
cd "$ROOT"

{
    echo "# Fused online transform + quantization: tests and benchmark"
    echo
    rev="$(git rev-parse --short HEAD 2>/dev/null || echo "no git")"
    echo "Reproduce: \`OUT=<dir> tools/device/bench_kron_quant.sh $QUICK\` (at $rev + working tree)," \
        "$(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader)"
    echo "nvcc: $("$NVCC" --version | tail -1)"
    echo
} > "$REPORT"

# ---- build -----------------------------------------------------------------------------------------------------------
# sm_90a for this GPU, and compute_86 PTX only, for the JIT run of the sm_86 path.
GENCODE="-gencode=arch=compute_90a,code=sm_90a;-gencode=arch=compute_86,code=compute_86"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
TESTS=""
start=$(date +%s)
if cmake -S "$ROOT" -B "$BUILD/cmake" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$NVCC" -DFQ_GTEST_SOURCE_DIR="$ROOT/.device/googletest" \
        -DFQ_CUDA_GENCODE="$GENCODE" > "$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD/cmake" -j "$JOBS" --target fq_tests >> "$OUT/build.log" 2>&1; then
    TESTS="$BUILD/cmake/fq_tests"
    echo "Build: CMake, fq_tests, $(( $(date +%s) - start )) s" >> "$REPORT"
else
    echo "CMake build of fq_tests failed; building the kron_quant tests alone" | tee -a "$REPORT"
    grep -E "error:|undefined reference" "$OUT/build.log" | cut -c1-240 | head -10 | tee -a "$REPORT" || true
    GT="$ROOT/.device/googletest/googletest"
    {
        "$NVCC" -std=c++17 -O3 -DNDEBUG -DFQ_HAVE_CUDA=1 -Inative/include -Inative/src \
            -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_86,code=compute_86 \
            -I"$GT/include" -I"$GT" \
            native/src/cuda/kron_quant.cu native/src/cuda/head_transforms.cu native/src/cuda/cuda_backend.cpp \
            native/tests/test_cuda_kron_quant.cpp native/tests/test_kron_quant_ref.cpp \
            native/src/cpu/kron_quant_ref.cpp native/src/cpu/dequant_ref.cpp native/src/cpu/w4a4_gemm_ref.cpp \
            native/src/quant/kron.cpp native/src/quant/fake_quant.cpp native/src/core/error.cpp \
            "$GT/src/gtest-all.cc" "$GT/src/gtest_main.cc" -Xcompiler -pthread -o "$BUILD/kq_tests"
    } >> "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    TESTS="$BUILD/kq_tests"
    echo "Build: direct nvcc, kron_quant tests only, $(( $(date +%s) - start )) s" >> "$REPORT"
fi

# ---- tests -----------------------------------------------------------------------------------------------------------
status=0
{
    echo
    echo "## Tests"
    echo '```'
} >> "$REPORT"
if [ "$TESTS" = "$BUILD/cmake/fq_tests" ]; then
    # -V keeps the tests' own output (the near-boundary counts) in the log.
    (cd "$BUILD/cmake" && FQ_SOURCE_DIR="$ROOT" ctest -V -R KronQuant) > "$OUT/ctest.log" 2>&1 || status=1
    grep -E "\[ kron_quant \]" "$OUT/ctest.log" | sed -E 's/^[0-9]+: //' >> "$REPORT" || true
    grep -E "tests passed|tests failed|\(Failed\)|\*\*\*" "$OUT/ctest.log" | tail -20 >> "$REPORT" || true
else
    "$TESTS" --gtest_filter='*KronQuant*' > "$OUT/gtest.log" 2>&1 || status=1
    grep -E "^\[ kron_quant \]|^\[  (PASSED|FAILED|SKIPPED) +\]" "$OUT/gtest.log" | grep -vE "SKIPPED \] [A-Z]" |
        head -40 >> "$REPORT" || true
fi
# The GPU tests once more from the compute_86 PTX: the code an RTX 3090 runs, JIT-compiled here.
CUDA_FORCE_PTX_JIT=1 "$TESTS" --gtest_filter='CudaKronQuant.*' > "$OUT/gtest_ptx86.log" 2>&1 || status=1
ptx_summary="$(grep -E "^\[  (PASSED|FAILED) +\]" "$OUT/gtest_ptx86.log" | head -6 | tr '\n' ' ')"
echo "compute_86 PTX (CUDA_FORCE_PTX_JIT=1): $ptx_summary" >> "$REPORT"
echo '```' >> "$REPORT"

# ---- benchmark -------------------------------------------------------------------------------------------------------
start=$(date +%s)
"$NVCC" -std=c++17 -O3 -DNDEBUG -Inative/include -Inative/src -gencode=arch=compute_90a,code=sm_90a \
    benchmarks/native/bench_kron_quant.cu native/src/cuda/kron_quant.cu native/src/cuda/head_transforms.cu \
    native/src/cuda/cuda_backend.cpp native/src/core/error.cpp native/src/quant/kron.cpp \
    -L"$CUDA_HOME_DIR/lib64" -Xlinker -rpath -Xlinker "$CUDA_HOME_DIR/lib64" -lcublas \
    -o "$BUILD/bench_kron_quant" >> "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo >> "$REPORT"
"$BUILD/bench_kron_quant" $QUICK >> "$REPORT" 2> "$OUT/bench.err" || status=1
echo >> "$REPORT"
echo "(benchmark built and run in $(( $(date +%s) - start )) s)" >> "$REPORT"
cat "$REPORT"
exit "$status"

#!/usr/bin/env bash
# The W4A4 GEMM on a GPU machine in one call: build (CUDA backend with CUTLASS, sm_80/sm_86 + compute_86 PTX +
# sm_90a), the W4A4 tests, the same tests with the sm_86 PTX JIT-compiled (CUDA_FORCE_PTX_JIT=1: the RTX 3090 path
# checked on an H100), then the benchmark against cuBLAS FP16/FP8. Everything lands in $OUT:
#   gpu.txt  build.log  ctest.log  ptx_jit.log  bench.log  bench_w4a4_gemm.md  summary.txt
#
# Two modes:
#   tools/device/bench_gemm.sh --stage [CUTLASS_DIR]
#       Here, on the development machine: copies the CUTLASS headers that the CUDA sources actually include (the
#       preprocessor dependency closure of every native/src/cuda/*.cu, ~16 MB instead of the 28 MB tree) into
#       .device/cutlass, which is ignored
#       by git and travels with `carry`. CUTLASS_DIR defaults to the tree tools/install_cuda.sh installed.
#       Needs .device/googletest too (copy /usr/src/googletest there), as tools/device/gpu_check.sh does.
#   tools/device/bench_gemm.sh
#       On the GPU machine (carry: .device/cutlass, .device/googletest): builds in $FQ_GPU_BUILD (default
#       /tmp/fq-gemm-build), runs everything, exits non-zero if a build, test or check failed (the benchmark still
#       runs after failed tests: it checks its own kernels and times only those that are right).
#       Only compute_86 PTX and sm_90a SASS are built (what an H100 runs; override with FQ_CUDA_GENCODE).
#       FQ_BENCH_ARGS passes options to the benchmark, e.g. FQ_BENCH_ARGS="--iterations=50 --m=2048".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [ "${1:-}" = "--stage" ]; then
    set -e
    src="${2:-${FQ_CACHE:-$HOME/.cache/flatquant}/cuda-13.0/cutlass}"
    nvcc="$(dirname "$src")/bin/nvcc"
    [ -x "$nvcc" ] || nvcc="$(command -v nvcc)"
    [ -f "$src/include/cutlass/cutlass.h" ] || { echo "no CUTLASS tree at $src" >&2; exit 1; }
    dst="$ROOT/.device/cutlass"
    deps="$(mktemp)"
    trap 'rm -f "$deps"' EXIT
    # The closure of every compilation pass (host and each device target can include different headers).
    for cu in "$ROOT"/native/src/cuda/*.cu; do
        for arch in compute_80 compute_86 compute_90a; do
            "$nvcc" -std=c++17 --expt-relaxed-constexpr -DNDEBUG -DFQ_HAVE_CUDA=1 -DFQ_HAVE_CUTLASS=1 -arch="$arch" \
                -I"$ROOT/native/include" -I"$ROOT/native/src" -isystem "$src/include" \
                -isystem "$src/tools/util/include" -M "$cu" -o "$deps.$arch"
            cat "$deps.$arch" >> "$deps"
            rm -f "$deps.$arch"
        done
    done
    rm -rf "$dst"
    tr ' \\' '\n\n' < "$deps" | grep -F "$src/" | sort -u | while read -r f; do
        rel="${f#"$src"/}"
        mkdir -p "$dst/$(dirname "$rel")"
        cp "$f" "$dst/$rel"
    done
    cp "$src/../licenses/nvidia-cutlass.txt" "$dst/LICENSE.txt" 2>/dev/null || true
    echo "staged $(find "$dst" -type f | wc -l) CUTLASS files ($(du -sh "$dst" | cut -f1)) in $dst"
    exit 0
fi

OUT="${OUT:-$ROOT/gemm-bench-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-gemm-build}"
mkdir -p "$OUT"
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
status=0
note() { echo "$*" | tee -a "$OUT/summary.txt"; }

nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
[ -f "$ROOT/.device/cutlass/include/cutlass/cutlass.h" ] || { note "missing .device/cutlass (run --stage here first)"; exit 1; }
[ -f "$ROOT/.device/googletest/CMakeLists.txt" ] || { note "missing .device/googletest"; exit 1; }

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
start=$(date +%s)
GENCODE="${FQ_CUDA_GENCODE:--gencode=arch=compute_86,code=compute_86;-gencode=arch=compute_90a,code=sm_90a}"
if ! cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$NVCC" -DFQ_CUTLASS_DIR="$ROOT/.device/cutlass" -DFQ_CUDA_GENCODE="$GENCODE" \
        -DFQ_GTEST_SOURCE_DIR="$ROOT/.device/googletest" > "$OUT/build.log" 2>&1; then
    note "configure failed"; tail -30 "$OUT/build.log"; exit 1
fi
targets=(fq_tests)
if grep -q "bench_w4a4_gemm" "$BUILD/build.ninja" "$BUILD/Makefile" 2>/dev/null; then
    targets+=(bench_w4a4_gemm)
else
    note "bench_w4a4_gemm is not configured: add 'add_subdirectory(benchmarks/native)' to the top-level CMakeLists.txt"
    status=1
fi
if ! cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" >> "$OUT/build.log" 2>&1; then
    note "build failed"; grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
note "build: $(( $(date +%s) - start )) s (targets: ${targets[*]})"
grep -E "warning" "$OUT/build.log" | grep -E "w4a4|bench_w4a4" | head -20 | tee -a "$OUT/summary.txt"

cd "$BUILD" || exit 1
export FQ_SOURCE_DIR="$ROOT"
# The W4A4 GEMM's own tests (a bare -R W4A4 would also pick up calibration tests named after the W4A4 scheme).
W4A4_TESTS='CudaW4A4|W4A4Pack|W4A4Epilogue|W4A4GemmRef|W4A4GemmBench'
if ctest --output-on-failure -R "$W4A4_TESTS" > "$OUT/ctest.log" 2>&1; then
    note "ctest -R '$W4A4_TESTS': passed"
else
    note "ctest -R '$W4A4_TESTS': FAILED"; status=1
fi
grep -E "tests passed|Failed|\*\*\*|Passed|Skipped|Not Run" "$OUT/ctest.log" | tail -30

# The sm_80/86 INT4 kernel and the GEMV from the compute_86 PTX; the sm_90 kernels then report UNSUPPORTED (skips).
if CUDA_FORCE_PTX_JIT=1 ./fq_tests --gtest_filter='CudaW4A4*' > "$OUT/ptx_jit.log" 2>&1; then
    note "CUDA_FORCE_PTX_JIT=1 fq_tests --gtest_filter=CudaW4A4*: passed"
else
    note "CUDA_FORCE_PTX_JIT=1 fq_tests --gtest_filter=CudaW4A4*: FAILED"; status=1
fi
grep -E "^\[  (PASSED|FAILED|SKIPPED)|^\[  +(OK|FAILED|SKIPPED) " "$OUT/ptx_jit.log" | tail -20

if [ -x ./benchmarks/native/bench_w4a4_gemm ]; then
    # shellcheck disable=SC2086
    if ./benchmarks/native/bench_w4a4_gemm --out="$OUT/bench_w4a4_gemm.md" ${FQ_BENCH_ARGS:-} > "$OUT/bench.log" 2>&1; then
        note "bench_w4a4_gemm: all checks passed"
    else
        note "bench_w4a4_gemm: exit $? (a check failed or an error; see bench.log)"; status=1
    fi
    grep -E "^check" "$OUT/bench.log" | tee -a "$OUT/summary.txt"
    [ -f "$OUT/bench_w4a4_gemm.md" ] && cat "$OUT/bench_w4a4_gemm.md"
fi
exit $status

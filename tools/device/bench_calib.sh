#!/usr/bin/env bash
# FlatQuant calibration on the GPU machine in one call: builds the calibration tests (native/tests/
# test_cuda_calib_*.cpp) and benchmarks/native/bench_calib_layer.cpp without CMake (only the sources they need,
# compiled in parallel, sm_90a), runs every test in its own process (a device fault in one cannot hide the others),
# then the benchmark. Everything lands in $OUT: calib.md (device, test summary, benchmark table) and the logs.
#
#   OUT=<dir> tools/device/bench_calib.sh [bench_calib_layer arguments, e.g. --steps=8]
#
# Environment:
#   FQ_CALIB_BIN      a folder with prebuilt calib_tests and bench_calib_layer (x86-64, CUDA runtime linked
#                     statically): skip the build and run those.
#   FQ_CALIB_TESTS    a gtest filter (default: every calibration test);  FQ_CALIB_SKIP_BENCH=1: tests only.
#   FQ_CALIB_JOBS     parallel compile jobs (default: all cores).
# Build needs: nvcc (PATH or /usr/local/cuda/bin), GoogleTest sources in .device/googletest (copy
# /usr/src/googletest there), optionally CUTLASS in .device/cutlass (FQ_CUTLASS_DIR) for the fast GEMM. No network.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/calib-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-calib-build}"
mkdir -p "$OUT" "$BUILD/obj"
REPORT="$OUT/calib.md"
cd "$ROOT"
{
    echo "# FlatQuant calibration on the GPU: tests and benchmark"
    echo
    echo "Reproduce: \`OUT=<dir> tools/device/bench_calib.sh $*\` ($(git rev-parse --short HEAD 2>/dev/null ||
        echo "no git") + working tree), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1)"
} > "$REPORT"

BIN="${FQ_CALIB_BIN:-}"
if [ -z "$BIN" ]; then
    NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
    CUDA_HOME_DIR="$(cd "$(dirname "$NVCC")/.." && pwd)"
    CUTLASS="${FQ_CUTLASS_DIR:-$ROOT/.device/cutlass}"
    GT="$ROOT/.device/googletest/googletest"
    CXXFLAGS="-std=gnu++17 -O2 -march=x86-64-v2 -DNDEBUG -Inative/include -Inative/src -I$CUDA_HOME_DIR/include"
    NVFLAGS="-std=c++17 -O3 -DNDEBUG -DFQ_HAVE_CUDA=1 -Inative/include -Inative/src"
    NVFLAGS="$NVFLAGS -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr"
    if [ -f "$CUTLASS/include/cutlass/cutlass.h" ]; then
        NVFLAGS="$NVFLAGS -DFQ_HAVE_CUTLASS=1 -isystem $CUTLASS/include -isystem $CUTLASS/tools/util/include"
    fi
    start=$(date +%s)
    cmds="$BUILD/commands.txt"
    : > "$cmds"
    objs=()
    add() {  # add <object> <command...>
        local o="$BUILD/obj/$1"
        shift
        echo "$* -o $o" >> "$cmds"
        objs+=("$o")
    }
    for f in native/src/cuda/gemm_f32.cu native/src/cuda/calib_*.cu; do
        add "$(basename "$f").o" "$NVCC $NVFLAGS -c $f"
    done
    for f in native/src/cuda/calib_*.cpp native/src/cuda/cuda_backend.cpp; do
        add "cuda_$(basename "$f").o" "g++ $CXXFLAGS -DFQ_HAVE_CUDA=1 -c $f"
    done
    # The CPU core as a CPU-only build, except calibrate.cpp, whose GPU path is what is tested: other parts of the
    # core may dispatch to CUDA code that these binaries do not link.
    for f in native/src/{core,io,tokenizer,model,eval,quant,cpu}/*.cpp; do
        defs=""
        [ "$f" = native/src/quant/calibrate.cpp ] && defs="-DFQ_HAVE_CUDA=1"
        add "$(echo "$f" | tr / _).o" "g++ $CXXFLAGS $defs -c $f"
    done
    lib_objs=("${objs[@]}")
    objs=()
    add gtest-all.o "g++ $CXXFLAGS -I$GT/include -I$GT -c $GT/src/gtest-all.cc"
    add gtest_main.o "g++ $CXXFLAGS -I$GT/include -I$GT -c $GT/src/gtest_main.cc"
    for f in native/tests/test_cuda_calib_*.cpp; do
        add "$(basename "$f").o" "g++ $CXXFLAGS -DFQ_HAVE_CUDA=1 -Inative/tests -I$GT/include -c $f"
    done
    test_objs=("${objs[@]}")
    objs=()
    add bench_calib_layer.o "g++ $CXXFLAGS -DFQ_HAVE_CUDA=1 -c benchmarks/native/bench_calib_layer.cpp"
    # The CUTLASS GEMM, the slowest compile, is first in the list.
    JOBS="${FQ_CALIB_JOBS:-$(nproc)}"
    xargs -P "$JOBS" -I{} sh -c '{}' < "$cmds" > "$OUT/build.log" 2>&1
    BIN="$BUILD/bin"
    mkdir -p "$BIN"
    LINK="-L$CUDA_HOME_DIR/lib64 -lcudart_static -ldl -lrt -pthread"
    g++ -o "$BIN/calib_tests" "${test_objs[@]}" "${lib_objs[@]}" $LINK >> "$OUT/build.log" 2>&1
    g++ -o "$BIN/bench_calib_layer" "$BUILD/obj/bench_calib_layer.o" "${lib_objs[@]}" $LINK >> "$OUT/build.log" 2>&1
    if [ ! -x "$BIN/calib_tests" ] || [ ! -x "$BIN/bench_calib_layer" ]; then
        grep -E "error|undefined" "$OUT/build.log" | head -30 | tee -a "$REPORT"
        exit 1
    fi
    echo "Build: $(( $(date +%s) - start )) s ($JOBS jobs)" >> "$REPORT"
fi

# ---- tests, one process each ----------------------------------------------------------------------------------------
status=0
FILTER="${FQ_CALIB_TESTS:-CudaCalib*:*CudaCalibLayer*}"
{
    echo
    echo "## Tests"
    echo '```'
} >> "$REPORT"
: > "$OUT/tests.log"
for t in $("$BIN/calib_tests" --gtest_list_tests --gtest_filter="$FILTER" |
           awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}'); do
    start=$(date +%s.%N)
    if timeout 120 "$BIN/calib_tests" --gtest_filter="$t" > "$BUILD/test.log" 2>&1; then
        res=PASS
        grep -q "^\[  SKIPPED \]" "$BUILD/test.log" && res=SKIP
    else
        res=FAIL
        status=1
    fi
    cat "$BUILD/test.log" >> "$OUT/tests.log"
    printf '%-4s %6.1f s  %s\n' "$res" "$(awk "BEGIN {print $(date +%s.%N) - $start}")" "$t" >> "$REPORT"
done
grep -E "^layer [0-9] epoch MSE" "$OUT/tests.log" >> "$REPORT" || true
echo '```' >> "$REPORT"
grep -B2 -A12 -E "Failure|FAILED|error:" "$OUT/tests.log" | head -150 > "$OUT/failures.log" || true

# ---- benchmark -----------------------------------------------------------------------------------------------------
if [ -z "${FQ_CALIB_SKIP_BENCH:-}" ]; then
    echo >> "$REPORT"
    echo "## bench_calib_layer $*" >> "$REPORT"
    echo >> "$REPORT"
    rc=0
    "$BIN/bench_calib_layer" "$@" >> "$REPORT" 2> "$OUT/bench.err" || rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && status=1  # 77: no CUDA device
    cat "$OUT/bench.err" >> "$REPORT"
fi
cat "$REPORT"
exit "$status"

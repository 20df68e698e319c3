#!/usr/bin/env bash
# Builds the project with the CUDA backend on a GPU machine and runs every C++ test there (the CUDA kernel tests
# included), writing the logs to $OUT (or ./gpu-check-out). Meant for a machine with nvcc but no package network:
# GoogleTest is built from sources carried in .device/googletest (copy /usr/src/googletest there first).
#
#   tools/device/gpu_check.sh [ctest -R regex]
# Environment: FQ_CUTLASS_DIR (CUTLASS tree, e.g. .device/cutlass staged by tools/device/bench_gemm.sh --stage),
# FQ_CUDA_GENCODE (e.g. "-gencode=arch=compute_90a,code=sm_90a" for a quicker Hopper-only build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/gpu-check-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-gpu-build}"
mkdir -p "$OUT"
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
    -DFQ_GTEST_SOURCE_DIR="$ROOT/.device/googletest" ${FQ_CUTLASS_DIR:+-DFQ_CUTLASS_DIR=$FQ_CUTLASS_DIR} \
    ${FQ_CUDA_GENCODE:+"-DFQ_CUDA_GENCODE=$FQ_CUDA_GENCODE"} \
    > "$OUT/configure.log" 2>&1 || { tail -50 "$OUT/configure.log"; exit 1; }
start=$(date +%s)
cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
cd "$BUILD"
FQ_SOURCE_DIR="$ROOT" ctest --output-on-failure -j 4 ${1:+-R "$1"} 2>&1 | tee "$OUT/ctest.log" | tail -40

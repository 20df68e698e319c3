#!/usr/bin/env bash
# The JMH benchmarks and the native decode timing on the GPU machine, which has no JDK, no Maven and no network.
#
#   benchmarks/device/jmh_gpu.sh --stage
#       Here, on the development machine (JDK >= 22 as JAVA_HOME, ./flatquant build done): builds
#       benchmarks.jar and a jlink'ed Java runtime into .device/ (ignored by git; ~47 MB, which leaves room for the
#       tree within the 64 MiB that one call carries).
#   benchmarks/device/jmh_gpu.sh [JMH ARGS...]
#       On the GPU machine (carry: .device/jre, .device/benchmarks.jar): builds libflatquant.so with the CUDA
#       backend in $FQ_GPU_BUILD (default /tmp/fq-jmh-build; reused while the machine stays warm) and the native
#       decode timing, then runs both. JMH ARGS replace the default selection. Results land in $OUT:
#         gpu.txt  build.log  jmh.txt  jmh.json  native_cpu.txt  native_gpu.txt
#
# The library is built there rather than carried: the one built here links the Debian OpenBLAS, which the GPU
# machine does not have (without it the CMake build uses its own matrix product). A GPU value of the device
# parameter that cannot run (no device, no CUDA backend, a model the GPU path does not take) is skipped by
# BenchMain with the reason, so the run never fails for that.
#
# SmolLM2 (93 MB) does not fit in one call beside the runtime: split it here (split -b 48M into an ignored folder),
# carry part aa in one call and copy it to /tmp/smol.gguf, carry part ab in the next and append it, check its
# sha256 (the device keeps /tmp while it stays warm), then run this script with FQ_SMOLLM2_GGUF=/tmp/smol.gguf and
# JMH ARGS that include -p model=smollm2. Extra Maven arguments for --stage go in MVN_ARGS.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [ "${1:-}" = "--stage" ]; then
    set -e
    [ -n "${JAVA_HOME:-}" ] || { echo "set JAVA_HOME to a JDK >= 22" >&2; exit 1; }
    (cd "$ROOT" && mvn -q -B ${MVN_ARGS:-} -Pjmh -Dflatquant.native.dir="$ROOT/build/native" -DskipTests install)
    mkdir -p "$ROOT/.device"
    cp "$ROOT/benchmarks/target/benchmarks.jar" "$ROOT/.device/benchmarks.jar"
    rm -rf "$ROOT/.device/jre"
    "$JAVA_HOME/bin/jlink" --add-modules java.base,jdk.unsupported,java.logging,java.management \
        --strip-debug --no-header-files --no-man-pages --compress zip-9 --output "$ROOT/.device/jre"
    du -sh "$ROOT/.device/jre" "$ROOT/.device/benchmarks.jar"
    exit 0
fi

OUT="${OUT:-$ROOT/jmh-gpu-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-jmh-build}"
JAVA="$ROOT/.device/jre/bin/java"
JAR="$ROOT/.device/benchmarks.jar"
mkdir -p "$OUT"
[ -x "$JAVA" ] && [ -f "$JAR" ] || { echo "missing .device/jre or .device/benchmarks.jar: run --stage here first" >&2; exit 1; }

nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

if [ ! -f "$BUILD/libflatquant.so" ]; then
    NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
    GEN=()
    command -v ninja >/dev/null && GEN=(-G Ninja)
    start=$(date +%s)
    cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
        -DFQ_BUILD_TESTS=OFF > "$OUT/build.log" 2>&1 \
        && cmake --build "$BUILD" -j "$(nproc)" --target flatquant >> "$OUT/build.log" 2>&1 \
        || { echo "library build failed"; tail -30 "$OUT/build.log"; exit 1; }
    echo "library build: $(( $(date +%s) - start )) s"
fi
g++ -std=c++17 -O2 -Wall -Wextra -I"$ROOT/native/include" "$ROOT/benchmarks/native/decode_latency.cpp" \
    -L"$BUILD" -lflatquant -Wl,-rpath,"$BUILD" -o "$BUILD/decode_latency" >> "$OUT/build.log" 2>&1 \
    || { echo "decode_latency build failed"; tail -20 "$OUT/build.log"; exit 1; }

if [ $# -gt 0 ]; then
    args=("$@")
else
    args=("DowncallBenchmark|TokenizerBenchmark|PrefillBenchmark|DecodeBenchmark" -p device=cpu,cuda
          -f 1 -wi 3 -i 5 -w 2s -r 2s)
fi
status=0
(cd "$ROOT" && "$JAVA" -Dflatquant.library.path="$BUILD/libflatquant.so" -Dflatquant.bench.threads="${FQ_BENCH_THREADS:-0}" \
    ${FQ_SMOLLM2_GGUF:+-Dflatquant.smollm2.gguf="$FQ_SMOLLM2_GGUF"} \
    -jar "$JAR" "${args[@]}" -rf json -rff "$OUT/jmh.json") > "$OUT/jmh.txt" 2>&1 || status=1
grep -E "^# skipping|^Benchmark|^[A-Z][A-Za-z]+Benchmark\.[a-zA-Z]+ |:p0.50|:p0.99" "$OUT/jmh.txt" | head -80

model="$ROOT/data/models/stories260K.gguf"
(cd "$ROOT" && "$BUILD/decode_latency" --model "$model" --threads "${FQ_BENCH_THREADS:-0}") \
    > "$OUT/native_cpu.txt" 2>&1 || status=1
(cd "$ROOT" && "$BUILD/decode_latency" --model "$model" --device 0) > "$OUT/native_gpu.txt" 2>&1 || true
cat "$OUT/native_cpu.txt" "$OUT/native_gpu.txt"
exit $status

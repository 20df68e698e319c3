#!/usr/bin/env bash
# The CPU measurements in this folder, as run: JMH (downcall, tokenizer, prefill, decode through the API and through
# the bare binding) and the same decode and prefill steps timed from C++ (benchmarks/native/decode_latency.cpp).
#
#   benchmarks/results/run_cpu.sh OUTDIR
#
# From the repository root, after
#   ./flatquant build && mvn -B -Pjmh -Dflatquant.native.dir=$PWD/build/native -DskipTests install
# Environment: JAVA_HOME (JDK >= 22), FQ_LIB (default build/native/libflatquant.so), FQ_JAR (default
# benchmarks/target/benchmarks.jar), FQ_SMOLLM2_GGUF (default: ./flatquant model-path), FQ_BENCH_THREADS (CPU
# threads of the engine, default 1: on a shared machine one thread is the least disturbed measure).
set -euo pipefail
OUT="${1:?usage: run_cpu.sh OUTDIR}"
mkdir -p "$OUT"
LIB="${FQ_LIB:-build/native/libflatquant.so}"
JAR="${FQ_JAR:-benchmarks/target/benchmarks.jar}"
SMOL="${FQ_SMOLLM2_GGUF:-$(./flatquant model-path)}"
THREADS="${FQ_BENCH_THREADS:-1}"
JAVA="$JAVA_HOME/bin/java"
jmh() { # name, JMH args...
    local name="$1"; shift
    echo "== $name: java -jar $JAR $*" | tee -a "$OUT/commands.txt"
    "$JAVA" -Dflatquant.library.path="$LIB" -Dflatquant.smollm2.gguf="$SMOL" -Dflatquant.bench.threads="$THREADS" \
        -jar "$JAR" "$@" -rf json -rff "$OUT/$name.json" > "$OUT/$name.txt" 2>&1
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$JAVA" -version 2>&1 | head -1
    echo "engine threads: $THREADS"
} > "$OUT/machine.txt"

g++ -std=c++17 -O2 -Wall -Wextra -Inative/include benchmarks/native/decode_latency.cpp \
    -L"$(dirname "$LIB")" -lflatquant -Wl,-rpath,"$(cd "$(dirname "$LIB")" && pwd)" -o "$OUT/decode_latency"

jmh downcall DowncallBenchmark -f 1 -wi 3 -i 5 -w 1s -r 1s
jmh tokenizer TokenizerBenchmark -p model=stories260K,smollm2 -f 1 -wi 2 -i 3 -w 1s -r 1s
jmh gpu_skip DecodeBenchmark -p device=cuda
jmh prefill_stories PrefillBenchmark -p device=cpu -p model=stories260K -p promptTokens=128,512 \
    -f 1 -wi 2 -i 3 -w 2s -r 2s
jmh decode_stories DecodeBenchmark -p device=cpu -p model=stories260K -p impl=api,ffm -f 1 -wi 2 -i 3 -w 2s -r 2s
echo "== native stories260K: decode_latency --model data/models/stories260K.gguf --threads $THREADS" \
    | tee -a "$OUT/commands.txt"
"$OUT/decode_latency" --model data/models/stories260K.gguf --threads "$THREADS" > "$OUT/native_stories.txt"
jmh prefill_smollm2 PrefillBenchmark -p device=cpu -p model=smollm2 -p promptTokens=128 -f 1 -wi 1 -i 3 -w 4s -r 4s
jmh decode_smollm2 DecodeBenchmark -p device=cpu -p model=smollm2 -p impl=api,ffm -f 1 -wi 1 -i 3 -w 4s -r 4s
echo "== native smollm2: decode_latency --model $SMOL --threads $THREADS --samples 300 --prefills 10" \
    | tee -a "$OUT/commands.txt"
"$OUT/decode_latency" --model "$SMOL" --threads "$THREADS" --samples 300 --prefills 10 > "$OUT/native_smollm2.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
rm -f "$OUT/decode_latency"

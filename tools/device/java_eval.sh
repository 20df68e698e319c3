#!/usr/bin/env bash
# Zero-shot evaluation through the Java CLI on the GPU machine, which has no JDK: unpacks a jlink'ed runtime carried
# as .device/jre.tgz (made here with `jlink --add-modules java.base,jdk.httpserver,java.logging,java.management,
# jdk.unsupported --strip-debug --no-header-files
# --no-man-pages --compress zip-9`), runs java/target/flatquant-*.jar (carried) against the library that
# tools/device/gpu_check.sh built (FQ_GPU_BUILD, default /tmp/fq-gpu-build) on CUDA device 0, once per method, and
# writes one JSON file per method to $OUT.
#
#   tools/device/java_eval.sh MODEL.gguf LIMIT "label|extra CLI flags" ...
#   e.g. tools/device/java_eval.sh /tmp/fq-stage/smol.gguf 500 "fp|" "rtn|--quant w4a4kv4 --method rtn"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/java-eval-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-gpu-build}"
model="$1"
limit="$2"
shift 2
mkdir -p "$OUT" /tmp/fq-jre
[ -x /tmp/fq-jre/jre/bin/java ] || tar xzf "$ROOT/.device/jre.tgz" -C /tmp/fq-jre
jar="$(ls "$ROOT"/java/target/flatquant-*.jar | grep -v -e sources -e javadoc | head -1)"
for spec in "$@"; do
    label="${spec%%|*}"
    flags="${spec#*|}"
    start=$(date +%s)
    # shellcheck disable=SC2086
    /tmp/fq-jre/jre/bin/java --enable-native-access=ALL-UNNAMED -Dflatquant.library.path="$BUILD/libflatquant.so" \
        -Dflatquant.data.dir="$ROOT/data" -jar "$jar" eval --device cuda --model "$model" --tasks all \
        --limit "$limit" --quiet --json $flags > "$OUT/eval-$label.json" 2> "$OUT/eval-$label.err" \
        || { tail -20 "$OUT/eval-$label.err"; exit 1; }
    echo "$label: $(( $(date +%s) - start )) s"
done

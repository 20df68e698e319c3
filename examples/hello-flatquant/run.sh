#!/usr/bin/env bash
# Builds the example against the installed FlatQuant artifacts and runs it.
#   ./run.sh [MODEL.gguf] [PROMPT]      (default: the repository's stories260K.gguf)
#   ./run.sh quantize [MODEL.gguf] [DATA_DIR] [ARTIFACT]   FlatQuant W4A4KV4 calibration and perplexities
# Prerequisite, once, in the repository root: ./flatquant build   (or: mvn -Dflatquant.native.dir=$PWD/build/native install)
# Extra Maven arguments (e.g. -Dmaven.repo.local=...) can be passed in MVN_ARGS. Needs a JDK 22+ as JAVA_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mvn -q -B ${MVN_ARGS:-} package
if [ "${1:-}" = quantize ]; then
    shift
    exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" --enable-native-access=ALL-UNNAMED \
        -cp "target/hello-flatquant.jar:target/lib/*" hello.Quantize "$@"
fi
exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" -jar target/hello-flatquant.jar "$@"

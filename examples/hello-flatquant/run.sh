#!/usr/bin/env bash
# Builds the example against the installed FlatQuant artifacts and runs it.
#   ./run.sh [MODEL.gguf] [PROMPT]      (default: the repository's stories260K.gguf)
# Prerequisite, once, in the repository root: ./flatquant build   (or: mvn -Dflatquant.native.dir=$PWD/build/native install)
# Extra Maven arguments (e.g. -Dmaven.repo.local=...) can be passed in MVN_ARGS. Needs a JDK 22+ as JAVA_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mvn -q -B ${MVN_ARGS:-} package
exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" -jar target/hello-flatquant.jar "$@"

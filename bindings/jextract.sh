#!/usr/bin/env bash
# The jextract command line equivalent to generate_bindings.py, for machines that have jextract 22
# (set JEXTRACT to its path). It keeps only the declarations of flatquant.h (fq_* and FQ_*), names the header
# class flatquant_h, and passes no -l: the generated code then looks symbols up with SymbolLookup.loaderLookup(),
# and org.flatquant.NativeLibrary loads the library.
#
#   bindings/jextract.sh [OUTPUT_DIR]     # default: a temporary directory, printed at the end
#
# The committed bindings come from generate_bindings.py (jextract is not in any package registry); to compare:
#   diff -r "$(bindings/jextract.sh | tail -1)/org/flatquant/bindings" bindings/src/main/java/org/flatquant/bindings
# Expected differences are listed in bindings/README.md.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
jextract="${JEXTRACT:-jextract}"
out="${1:-$(mktemp -d)}"
header="$repo/native/include/flatquant.h"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Every declaration jextract sees, one --include-* option per line, with the header it came from.
"$jextract" --dump-includes "$work/all.txt" "$header"
# Keep the API's own: functions, structs, the callback typedef and the integer macros. FQ_API and the include
# guard are not constants; the stdint typedefs are inlined as primitive layouts.
grep -E '^--include-(function|struct|typedef|constant) (fq_|FQ_)' "$work/all.txt" \
  | grep -vE ' (FQ_API|FLATQUANT_H) ' \
  | sed 's/ *#.*$//' > "$work/symbols.txt"

"$jextract" \
  --output "$out" \
  --target-package org.flatquant.bindings \
  --header-class-name flatquant_h \
  @"$work/symbols.txt" \
  "$header"

echo "$out"

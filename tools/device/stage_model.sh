#!/usr/bin/env bash
# Stages a model file that is too large to travel in one device call: each call carries one part (a folder of the
# checkout named in `carry`) and appends it to /tmp/fq-stage/<name>; the last call checks the SHA-256 and moves the
# file into place. /tmp on the device survives only while the machine stays warm, so the calls must follow each other.
#
# Here (once):   split -b 33000000 MODEL.gguf .device/part.  &&  for p in .device/part.*; do mkdir -p .device/p_${p##*.}
#                && mv $p .device/p_${p##*.}/; done
# There:         tools/device/stage_model.sh NAME PART_DIR [SHA256]     (SHA256 on the call with the last part)
# Result:        /tmp/fq-stage/NAME (printed), once the SHA-256 matches.
set -euo pipefail
name="$1"
part_dir="$2"
sha="${3:-}"
mkdir -p /tmp/fq-stage
cat "$part_dir"/* >> "/tmp/fq-stage/$name.partial"
echo "staged $(stat -c %s "/tmp/fq-stage/$name.partial") bytes of $name"
if [ -n "$sha" ]; then
    got="$(sha256sum "/tmp/fq-stage/$name.partial" | cut -d' ' -f1)"
    if [ "$got" != "$sha" ]; then
        rm -f "/tmp/fq-stage/$name.partial"
        echo "stage_model: $name has sha256 $got, expected $sha (a part is missing or the machine went cold)" >&2
        exit 1
    fi
    mv "/tmp/fq-stage/$name.partial" "/tmp/fq-stage/$name"
    echo "/tmp/fq-stage/$name"
fi

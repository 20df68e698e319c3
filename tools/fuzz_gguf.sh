#!/usr/bin/env bash
# Fuzzes the GGUF reader: builds native/fuzz/fuzz_gguf.cpp with libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer and runs it for a bounded time.
#
#   tools/fuzz_gguf.sh [seconds]      (default 60)
#
# Installs clang from the Debian packages when no clang++ is found (needs root or sudo). Builds in
# ${FQ_FUZZ_BUILD_DIR:-build/fuzz}, compiling only the sources the reader needs, so the fuzz build does not depend
# on the state of the rest of the library. Seeds are small GGUF files generated here plus the header of
# stories260K when it is present. Exits non-zero when the fuzzer finds a crash, a leak, undefined
# behaviour, an allocation over 512 MiB or a timeout; the failing input is left in the build directory.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FQ_FUZZ_BUILD_DIR:-$root/build/fuzz}"

find_clang() {
    for c in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
        if command -v "$c" >/dev/null 2>&1; then echo "$c"; return 0; fi
    done
    return 1
}

cxx="$(find_clang || true)"
if [[ -z "$cxx" ]]; then
    echo "fuzz_gguf: clang++ not found, installing clang from the Debian packages" >&2
    sudo_cmd=""
    if [[ "$(id -u)" != 0 ]]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq clang >/dev/null
    cxx="$(find_clang)"
fi

mkdir -p "$build/corpus" "$build/seeds"
sources=(
    "$root/native/fuzz/fuzz_gguf.cpp"
    "$root/native/src/io/gguf.cpp"
    "$root/native/src/io/gguf_dequant.cpp"
    "$root/native/src/core/error.cpp"
)
echo "fuzz_gguf: building with $cxx in $build" >&2
"$cxx" -std=c++17 -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/native/include" -I"$root/native/src" \
    "${sources[@]}" -o "$build/fuzz_gguf"

# Seeds: a small valid GGUF of every metadata kind and several tensor types, written with Python's struct.
python3 - "$build/seeds" <<'PY'
import struct, sys, os
def s(x): return struct.pack("<Q", len(x)) + x
def kv(key, t, payload): return s(key.encode()) + struct.pack("<I", t) + payload
kvs = [
    kv("general.architecture", 8, s(b"llama")),
    kv("general.alignment", 4, struct.pack("<I", 32)),
    kv("llama.block_count", 4, struct.pack("<I", 1)),
    kv("eps", 6, struct.pack("<f", 1e-5)),
    kv("flag", 7, b"\x01"),
    kv("big", 10, struct.pack("<Q", 2**40)),
    kv("neg", 11, struct.pack("<q", -5)),
    kv("dbl", 12, struct.pack("<d", 0.5)),
    kv("tokens", 9, struct.pack("<IQ", 8, 3) + s(b"<unk>") + s(b"a") + s(b"\xe2\x96\x81b")),
    kv("scores", 9, struct.pack("<IQ", 6, 2) + struct.pack("<2f", 0.0, -1.0)),
    kv("types", 9, struct.pack("<IQ", 5, 2) + struct.pack("<2i", 1, 3)),
    kv("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 0, 2) + b"\x01\x02"),
]
# (name, dims, ggml type, bytes): F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K
tensors = [("f32", [4, 2], 0, 32), ("f16", [8], 1, 16), ("bf16", [8], 30, 16), ("q4_0", [32], 2, 18),
           ("q8_0", [32, 2], 8, 68), ("q4_k", [256], 12, 144), ("q6_k", [256], 14, 210)]
info, data = b"", b""
for name, dims, t, n in tensors:
    info += s(name.encode()) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
    info += struct.pack("<IQ", t, len(data))
    block = bytes((i * 37 + 11) & 0xFF for i in range(n))
    data += block + b"\0" * ((-len(block)) % 32)
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + info
img = head + b"\0" * ((-len(head)) % 32) + data
open(os.path.join(sys.argv[1], "seed_all_types.gguf"), "wb").write(img)
open(os.path.join(sys.argv[1], "seed_v2_no_tensors.gguf"), "wb").write(
    b"GGUF" + struct.pack("<IQQ", 2, 0, 2) + kvs[0] + kvs[8])
PY
for stories in "$root/data/models/stories260K.gguf" "$root/../shared/data/models/stories260K.gguf"; do
    if [[ -f "$stories" ]]; then head -c 16384 "$stories" > "$build/seeds/stories260K_head.gguf"; break; fi
done

echo "fuzz_gguf: running for ${seconds}s" >&2
cd "$build"
./fuzz_gguf corpus seeds -max_total_time="$seconds" -max_len=65536 -malloc_limit_mb=512 -timeout=10 \
    -print_final_stats=1

#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler toolchain (nvcc, ptxas, cicc, the runtime headers and the static cudart, CCCL),
# cuBLAS and the CUTLASS C++ headers from the Python package index, laid out as a toolkit that CMake accepts:
#
#   PREFIX/bin/nvcc ptxas cudafe++ fatbinary nvlink ...   nvcc.profile expects nvvm/ beside bin/
#   PREFIX/nvvm/bin/cicc, PREFIX/nvvm/libdevice/
#   PREFIX/include/           cuda_runtime.h, crt/, cublas*.h; include/cccl/ holds thrust, cub, cuda::std
#   PREFIX/lib/  (lib64 -> lib)  libcudart_static.a, libcudadevrt.a, libcudart.so.13, libcublas(Lt).so.13
#   PREFIX/cutlass/include, PREFIX/cutlass/tools/util/include   the layout of a CUTLASS source tree
#   PREFIX/licenses/          the licence texts shipped in the wheels
#
# Usage: tools/install_cuda.sh [PREFIX]
#   PREFIX defaults to ${FQ_CACHE:-$HOME/.cache/flatquant}/cuda-13.0.
#   FQ_CUDA_CUBLAS=0 leaves cuBLAS out (its wheel is 420 MB; only the FP16 baseline benchmarks need it).
# Needs python3 with pip, and x86_64 Linux (the wheels are pinned by hash for that platform). Idempotent: a stamp
# file records what was installed, and a second run with the same pins only prints the paths. Progress goes to
# stderr; stdout gets KEY=VALUE lines (the toolkit paths and the CMake cache entries) for scripts to read.
#
# The versions match the toolkit on the GPU machine (CUDA 13.0 update 2: nvcc 13.0.88, cudart 13.0.96, cuBLAS
# 13.1.0.3), so code built here and code built there see the same compiler.
set -euo pipefail

PREFIX="${1:-${FQ_CACHE:-$HOME/.cache/flatquant}/cuda-13.0}"
WITH_CUBLAS="${FQ_CUDA_CUBLAS:-1}"
mkdir -p "$(dirname "$PREFIX")"
PREFIX="$(cd "$(dirname "$PREFIX")" && pwd -P)/$(basename "$PREFIX")"  # absolute: the paths are printed for CMake

# name==version --hash=sha256:... (x86_64 wheels). Bump all of them together and re-check what nvcc needs.
PINS_TOOLCHAIN='
nvidia-cuda-nvcc==13.0.88 --hash=sha256:56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
nvidia-nvvm==13.0.88 --hash=sha256:c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0
nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cuda-cccl==13.0.85 --hash=sha256:e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649
nvidia-cutlass==4.2.0.0 --hash=sha256:f9599ada45c7bcb6bf53f7d3f0a7d154183e53451c01bfa59eecd37dd4a693f6
'
PINS_CUBLAS='
nvidia-cublas==13.1.0.3 --hash=sha256:ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171
'
LAYOUT_VERSION=1  # bump when the unpacking below changes, so existing installs are redone

log() { printf '[install_cuda] %s\n' "$*" >&2; }
die() { printf '[install_cuda] error: %s\n' "$*" >&2; exit 1; }

print_paths() {
    echo "FQ_CUDA_PREFIX=$PREFIX"
    echo "CMAKE_CUDA_COMPILER=$PREFIX/bin/nvcc"
    echo "CUDAToolkit_ROOT=$PREFIX"
    echo "FQ_CUTLASS_DIR=$PREFIX/cutlass"
    log "cmake flags: -DCMAKE_CUDA_COMPILER=$PREFIX/bin/nvcc -DCUDAToolkit_ROOT=$PREFIX" \
        "-DFQ_CUTLASS_DIR=$PREFIX/cutlass"
}

pins="$PINS_TOOLCHAIN"
[ "$WITH_CUBLAS" = "0" ] || pins="$pins$PINS_CUBLAS"
# Built through $(...) like the $(cat) it is compared with, so both lose the trailing newlines alike.
stamp_text="$(printf 'layout=%s\n%s' "$LAYOUT_VERSION" "$pins" | sed '/^$/d')"
STAMP="$PREFIX/.fq-install-stamp"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp_text" ] && [ -x "$PREFIX/bin/nvcc" ]; then
    print_paths
    exit 0
fi

if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
    die "only x86_64 Linux is supported (the pins are x86_64 wheels)"
fi
command -v python3 >/dev/null || die "python3 is needed"
python3 -m pip --version >/dev/null 2>&1 || die "pip is needed (Debian: apt-get install python3-pip)"

parent="$(dirname "$PREFIX")"
# PREFIX is replaced wholesale below: never one that holds anything but an earlier install of this script.
if [ -d "$PREFIX" ] && [ -n "$(ls -A "$PREFIX")" ] && [ ! -f "$STAMP" ]; then
    die "$PREFIX exists and was not made by this script; choose another prefix"
fi
# One installer at a time per prefix; a second one waits, then finds the stamp.
if command -v flock >/dev/null; then
    exec 9>"$PREFIX.lock"
    flock 9
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp_text" ] && [ -x "$PREFIX/bin/nvcc" ]; then
        print_paths
        exit 0
    fi
fi

# Everything is staged beside PREFIX (same file system) and moved into place only once it works, so an interrupted
# run never leaves a half toolkit that a later run would trust.
work="$(mktemp -d "$parent/.cuda-13.0-staging.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

printf '%s\n' "$pins" | sed '/^$/d' >"$work/requirements.txt"
log "downloading $(grep -c . "$work/requirements.txt") wheels into $work"
# --no-deps: the wheels' own Python dependencies (cuda-python, numpy, ... for CUTLASS's Python side) are not needed.
python3 -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: --require-hashes \
    -r "$work/requirements.txt" -d "$work/wheels" >&2 || die "pip download failed"

log "unpacking"
python3 - "$work/wheels" "$work/root" <<'PYEOF'
import os, sys, zipfile, glob

wheels, root = sys.argv[1], sys.argv[2]
# Paths inside the wheels -> paths in the toolkit. Members matching no rule are not unpacked.
RULES = [
    ("nvidia/cu13/", ""),
    ("cutlass_library/source/include/", "cutlass/include/"),
    ("cutlass_library/source/tools/util/include/", "cutlass/tools/util/include/"),
]
# Not needed to compile or link: nvcc does not load libnvvm (cicc is self-contained), nor NVBLAS; .metadata is
# packaging provenance.
SKIP = ("lib/libnvvm.so", "lib/libnvblas.so", ".metadata/")

os.makedirs(os.path.join(root, "licenses"), exist_ok=True)
for whl in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
    dist = os.path.basename(whl).split("-")[0]
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if ".dist-info/" in name and os.path.basename(name).lower().startswith("licen"):
                dest = os.path.join(root, "licenses", dist + ".txt")
            else:
                dest = None
                for src, dst in RULES:
                    if name.startswith(src):
                        rel = dst + name[len(src):]
                        if not any(rel.startswith(s) or s in rel for s in SKIP):
                            dest = os.path.join(root, rel)
                        break
                if dest is None:
                    continue
            if ".." in name.split("/"):
                raise SystemExit("refusing path " + name + " in " + whl)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with zf.open(info) as f, open(dest, "wb") as out:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            # zipfile drops the Unix mode; the executables (nvcc, ptxas, cicc, ...) need their x bits back.
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(dest, mode if mode else 0o644)
PYEOF

root="$work/root"
# nvcc.profile links against $(TOP)/lib64; the wheels ship lib/. Linkers want the unversioned .so names.
ln -s lib "$root/lib64"
for so in libcudart libcublas libcublasLt; do
    if [ -e "$root/lib/$so.so.13" ]; then ln -s "$so.so.13" "$root/lib/$so.so"; fi
done
for f in bin/nvcc bin/ptxas bin/cudafe++ bin/fatbinary bin/nvlink nvvm/bin/cicc nvvm/libdevice/libdevice.10.bc \
         include/cuda_runtime.h include/crt/host_config.h include/cccl/cuda/std/cstdint lib/libcudart_static.a \
         cutlass/include/cutlass/cutlass.h cutlass/include/cute/tensor.hpp \
         cutlass/tools/util/include/cutlass/util/device_memory.h; do
    [ -e "$root/$f" ] || die "the wheels did not provide $f"
done
if [ "$WITH_CUBLAS" != "0" ]; then
    if [ ! -e "$root/include/cublasLt.h" ] || [ ! -e "$root/lib/libcublasLt.so.13" ]; then
        die "the cuBLAS wheel did not provide its header and library"
    fi
fi

# A smoke test before the toolkit is trusted: the three architectures the project builds, static cudart linked.
log "checking nvcc"
cat >"$work/smoke.cu" <<'EOF'
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cuda/std/cstdint>
__global__ void smoke(float *out) { out[threadIdx.x] = __half2float(__float2half(1.0f)) + cuda::std::int32_t{0}; }
int main() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess || n == 0 ? 0 : 1;
}
EOF
"$root/bin/nvcc" -std=c++17 -cudart static -gencode arch=compute_80,code=sm_80 \
    -gencode arch=compute_90a,code=sm_90a "$work/smoke.cu" -o "$work/smoke" >&2 ||
    die "nvcc cannot compile a test program"
"$work/smoke" || die "the test program built with the static cudart does not run"

printf '%s' "$stamp_text" >"$root/.fq-install-stamp"
rm -rf "$PREFIX"
mv "$root" "$PREFIX"
log "installed into $PREFIX in $(( $(date +%s) - started )) s ($(du -sh "$PREFIX" | cut -f1))"
print_paths

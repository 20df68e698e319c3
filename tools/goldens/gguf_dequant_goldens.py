#!/usr/bin/env python3
"""Writes native/tests/golden/gguf_dequant.bin: random but valid blocks of every tensor type the GGUF reader
dequantizes, with the FP32 values the `gguf` package (gguf.quants.dequantize, an implementation independent of
ours) decodes them to. native/tests/test_gguf.cpp requires bit-equal results.

Blocks are random bytes; the fp16 scale fields (d, dmin, m) are overwritten with random finite fp16 values of
either sign, subnormals included, because an Inf/NaN scale is not a valid block. A few blocks of the types with
an additive min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) set the min to nearly cancel d*q, so the final rounding of the
difference is exercised with small results.

File layout (little-endian): b"FQDQ", u32 version = 1, u32 n_cases; then per case: u32 ggml type, u32 n_elements,
u32 n_bytes, the n_bytes raw blocks, n_elements float32 values.

Usage: python tools/goldens/gguf_dequant_goldens.py [output path]   (needs: pip install gguf numpy)
"""
import os
import struct
import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

SEED = 20240607

# fp16 field byte offsets inside one block of each type (ggml-common.h block layouts).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
# (offset of d, offset of the additive min, sign the min enters with) for the near-cancellation blocks.
MIN_FIELDS = {T.Q4_1: (0, 2, +1), T.Q5_1: (0, 2, +1), T.Q2_K: (80, 82, -1), T.Q4_K: (0, 2, -1), T.Q5_K: (0, 2, -1)}


def random_finite_halves(rng, n):
    """Random fp16 bit patterns with exponent != 31 (no Inf/NaN), both signs, subnormals and zero included."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp = (bits >> 10) & 0x1F
    bits[exp == 0x1F] &= np.uint16(0xBFFF)  # clear one exponent bit: still random, now finite
    return bits


def modest_halves(rng, n):
    """Finite fp16 values of ordinary magnitude (scales as real quantizers produce them)."""
    return (rng.standard_normal(n) * 0.05).astype(np.float16).view(np.uint16)


def make_case(rng, qtype, n_blocks, cancel):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        raw = rng.standard_normal(n_blocks).astype(np.float32).view(np.uint8)
    elif qtype == T.F16:
        raw = random_finite_halves(rng, n_blocks).view(np.uint8)
    elif qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        bits[((bits >> 7) & 0xFF) == 0xFF] &= np.uint16(0xBFFF)  # finite
        raw = bits.view(np.uint8)
    else:
        blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint16).astype(np.uint8)
        for k in range(n_blocks):
            # Half the blocks get scales over the whole fp16 range, half ordinary ones.
            gen = random_finite_halves if k % 2 == 0 else modest_halves
            for off in HALF_FIELDS[qtype]:
                blocks[k, off:off + 2] = gen(rng, 1).view(np.uint8)
        if cancel and qtype in MIN_FIELDS:
            d_off, m_off, sign = MIN_FIELDS[qtype]
            for k in range(min(2, n_blocks)):
                d = np.float32(np.float16(rng.uniform(0.01, 0.1)))
                blocks[k, d_off:d_off + 2] = np.array([d], dtype=np.float16).view(np.uint8)
                # The stored min is a fp16 near d * 7 (Q4_1/Q5_1: its negation), so d*q -/+ m cancels for q = 7.
                blocks[k, m_off:m_off + 2] = np.array([-sign * d * 7 * 1.0001], dtype=np.float16).view(np.uint8)
                # K-quants: make the first sub-block's 6-bit scale equal its 6-bit min, so (d*sc)*q - dmin*m
                # cancels there too.
                if qtype == T.Q2_K:
                    x = int(rng.integers(1, 16))
                    blocks[k, 0] = (x << 4) | x
                elif qtype in (T.Q4_K, T.Q5_K):
                    blocks[k, 8] = blocks[k, 4]
        raw = blocks.reshape(-1)
    n_elements = raw.size // block_bytes * block_elems
    values = np.asarray(dequantize(raw.reshape(-1, block_bytes) if qtype not in (T.F32, T.F16) else raw, qtype),
                        dtype=np.float32).reshape(-1)
    assert values.size == n_elements, (qtype.name, values.size, n_elements)
    return int(qtype), n_elements, raw.tobytes(), values.astype("<f4").tobytes()


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "native/tests/golden/gguf_dequant.bin")
    rng = np.random.default_rng(SEED)
    cases = [make_case(rng, T.F32, 64, False), make_case(rng, T.F16, 512, False),
             make_case(rng, T.BF16, 512, False)]
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        cases.append(make_case(rng, qtype, 16, True))
    for qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        cases.append(make_case(rng, qtype, 6, True))
    with open(out_path, "wb") as f:
        f.write(b"FQDQ" + struct.pack("<II", 1, len(cases)))
        for qtype, n_elements, raw, values in cases:
            f.write(struct.pack("<III", qtype, n_elements, len(raw)))
            f.write(raw)
            f.write(values)
    print(f"wrote {out_path}: {len(cases)} cases, {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main()

// The KV cache writer and the attention kernels (native/src/cuda/kv4_attention.h) against the CPU twin
// (native/src/cpu/kv4_attention_ref.h, itself checked in test_kv4_attention_ref.cpp) on random data: both cache
// formats, head_dim 64 and 128, GQA groups 1, 2, 4 and 8, decode with 1 and several key slices (and the automatic
// choice), prefill with a prefix already in the cache and query counts that do not fill a tile. Skipped without a
// CUDA device; argument checks run everywhere.
//
// Tolerances. The cache writer follows the twin's FP32 operations one by one: codes and params must be identical.
// Attention: the twin is exact (double) on the same FP16 queries and the same cache values. The kernels differ by
//  * FP32 scores (relative 2^-22 of sum |q k|, far below what moves a probability by 1e-5) and exp2f (2 ulp);
//  * the probabilities times the V scale rounded to FP16 before the tensor-core product (prefill) or not (decode):
//    at most 2^-11 relative per term, so 2^-11 sum_t p_t |v_t| <= 2^-11 max|v| in the output;
//  * the FP16 output rounding: 2^-11 |out|.
// The check is |gpu - ref| <= 2^-10 max|v| + 2^-10 |ref| + 1e-6, twice the bound.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/kv4_attention_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/kv4_attention.h"

namespace {

using fq::cpu::f16_bits_to_f32;
using fq::cpu::f32_to_f16_bits;
using fq::cuda::DeviceBuffer;
using fq::cuda::KvCacheFormat;
using fq::cuda::KvCacheView;
using fq::cuda::Stream;

std::vector<uint16_t> random_f16(size_t count, double stddev, std::mt19937 &rng) {
    std::normal_distribution<double> dist(0.0, stddev);
    std::vector<uint16_t> v(count);
    for (uint16_t &x : v) x = f32_to_f16_bits(static_cast<float>(dist(rng)));
    return v;
}

template <class T> DeviceBuffer upload(const std::vector<T> &v, const Stream &s) {
    DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16));
    if (!v.empty()) b.upload(v.data(), v.size() * sizeof(T), s);
    return b;
}
template <class T> std::vector<T> download(const DeviceBuffer &b, size_t count, const Stream &s) {
    std::vector<T> v(count);
    if (count) b.download(v.data(), count * sizeof(T), s);
    return v;
}

// A cache on the device and its host copy.
struct Cache {
    KvCacheFormat format;
    int batch, kv_heads, d;
    int64_t cap;
    DeviceBuffer k, v, kp, vp;
    Cache(KvCacheFormat f, int b, int hk, int hd, int64_t c)
        : format(f), batch(b), kv_heads(hk), d(hd), cap(c),
          k(fq::cuda::kv_cache_data_bytes(f, b, hk, hd, c)), v(fq::cuda::kv_cache_data_bytes(f, b, hk, hd, c)),
          kp(std::max<size_t>(fq::cuda::kv_cache_params_bytes(f, b, hk, c), 16)),
          vp(std::max<size_t>(fq::cuda::kv_cache_params_bytes(f, b, hk, c), 16)) {}
    KvCacheView view() {
        KvCacheView c;
        c.format = format;
        c.k = k.data();
        c.v = v.data();
        c.k_params = kp.as<float>();
        c.v_params = vp.as<float>();
        c.batch = batch;
        c.kv_heads = kv_heads;
        c.head_dim = d;
        c.capacity = cap;
        return c;
    }
    // Host copies for the twin.
    std::vector<uint8_t> hk, hv;
    std::vector<float> hkp, hvp;
    std::vector<uint16_t> hk16, hv16;
    fq::cpu::KvCacheRef fetch(const Stream &s) {
        fq::cpu::KvCacheRef r;
        r.int4 = format == KvCacheFormat::kInt4;
        const size_t rows = static_cast<size_t>(batch) * kv_heads * cap;
        if (r.int4) {
            hk = download<uint8_t>(k, rows * d / 2, s);
            hv = download<uint8_t>(v, rows * d / 2, s);
            hkp = download<float>(kp, rows * 2, s);
            hvp = download<float>(vp, rows * 2, s);
            r.k_codes = hk.data();
            r.v_codes = hv.data();
            r.k_params = hkp.data();
            r.v_params = hvp.data();
        } else {
            hk16 = download<uint16_t>(k, rows * d, s);
            hv16 = download<uint16_t>(v, rows * d, s);
            r.k_f16 = hk16.data();
            r.v_f16 = hv16.data();
        }
        r.batch = batch;
        r.kv_heads = kv_heads;
        r.head_dim = d;
        r.capacity = cap;
        return r;
    }
};

// Writes positions [pos0, pos0 + S) of every sequence from random K/V rows (ld wider than the row, to exercise it)
// and checks them against the twin. Returns nothing; the device cache holds the rows afterwards.
void write_and_check(Cache &c, int64_t pos0, int64_t S, std::mt19937 &rng, const Stream &s) {
    const int64_t width = static_cast<int64_t>(c.kv_heads) * c.d, ld = width + 8, T = S * c.batch;
    // Spreads differ per row so that scales and zero points vary.
    std::vector<uint16_t> k = random_f16(static_cast<size_t>(T * ld), 1.0, rng), v = random_f16(k.size(), 1.0, rng);
    std::uniform_real_distribution<double> shift(-1.5, 1.5);
    for (int64_t t = 0; t < T; ++t) {
        const double sh = shift(rng);
        for (int64_t j = 0; j < width; ++j)
            k[t * ld + j] = f32_to_f16_bits(static_cast<float>(f16_bits_to_f32(k[t * ld + j]) * 2.0 + sh));
    }
    DeviceBuffer dk = upload(k, s), dv = upload(v, s);
    fq::cuda::KvWriteArgs a;
    a.k_f16 = dk.as<uint16_t>();
    a.ld_k = ld;
    a.v_f16 = dv.as<uint16_t>();
    a.ld_v = ld;
    a.n_new = S;
    a.pos0 = pos0;
    a.k_clip_max = 0.93f;
    a.k_clip_min = 0.97f;
    a.v_clip_max = 0.9f;
    a.v_clip_min = 1.0f;
    fq::cuda::kv_cache_write(c.view(), a, s);
    s.synchronize();
    const fq::cpu::KvCacheRef r = c.fetch(s);
    for (int b = 0; b < c.batch; ++b)
        for (int64_t si = 0; si < S; ++si)
            for (int g = 0; g < c.kv_heads; ++g) {
                const int64_t row = (static_cast<int64_t>(b) * c.kv_heads + g) * c.cap + pos0 + si;
                for (int which = 0; which < 2; ++which) {
                    const uint16_t *src = (which ? v : k).data() + (b * S + si) * ld + static_cast<int64_t>(g) * c.d;
                    if (!r.int4) {
                        const uint16_t *got = (which ? r.v_f16 : r.k_f16) + row * c.d;
                        for (int j = 0; j < c.d; ++j) ASSERT_EQ(got[j], src[j]);
                        continue;
                    }
                    std::vector<uint8_t> codes(static_cast<size_t>(c.d / 2));
                    float params[2];
                    fq::cpu::kv4_quantize_rows_ref(codes.data(), params, src, c.d, 1, c.d,
                                                   which ? a.v_clip_max : a.k_clip_max,
                                                   which ? a.v_clip_min : a.k_clip_min);
                    const uint8_t *got = (which ? r.v_codes : r.k_codes) + row * (c.d / 2);
                    const float *gp = (which ? r.v_params : r.k_params) + 2 * row;
                    ASSERT_EQ(gp[0], params[0]) << "scale of row " << row;
                    ASSERT_EQ(gp[1], params[1]) << "zero of row " << row;
                    for (int j = 0; j < c.d / 2; ++j) ASSERT_EQ(got[j], codes[j]) << "row " << row << " byte " << j;
                }
            }
}

double max_abs_v(const fq::cpu::KvCacheRef &r, int64_t n_keys) {
    double m = 0.0;
    for (int b = 0; b < r.batch; ++b)
        for (int g = 0; g < r.kv_heads; ++g)
            for (int64_t t = 0; t < n_keys; ++t)
                for (int j = 0; j < r.head_dim; ++j)
                    m = std::max(m, std::fabs(fq::cpu::kv_cache_value_ref(r, true, b, g, t, j)));
    return m;
}

// Runs attention for S queries at pos0 on the device and compares with the twin.
void check_attention(Cache &c, int H, int64_t S, int64_t pos0, std::mt19937 &rng, const Stream &s,
                     const char *what) {
    const int64_t width = static_cast<int64_t>(H) * c.d, ld = width + 16, T = S * c.batch;
    std::vector<uint16_t> q = random_f16(static_cast<size_t>(T * ld), 1.0, rng);
    DeviceBuffer dq = upload(q, s), dout(static_cast<size_t>(T * ld) * 2);
    fq::cuda::AttentionArgs a;
    a.out_f16 = dout.as<uint16_t>();
    a.ld_out = ld;
    a.q_f16 = dq.as<uint16_t>();
    a.ld_q = ld;
    a.n_heads = H;
    a.n_q = S;
    a.pos0 = pos0;
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));
    const KvCacheView view = c.view();
    const size_t ws_bytes = fq::cuda::attention_workspace_bytes(view, a);
    DeviceBuffer ws(std::max<size_t>(ws_bytes, 16));
    fq::cuda::attention(view, a, ws.data(), ws_bytes, s);
    s.synchronize();
    const std::vector<uint16_t> got = download<uint16_t>(dout, static_cast<size_t>(T * ld), s);
    const fq::cpu::KvCacheRef r = c.fetch(s);
    std::vector<double> want(static_cast<size_t>(T * width));
    fq::cpu::attention_ref(want.data(), q.data(), ld, r, S, pos0, H, a.scale);
    const double vmax = max_abs_v(r, pos0 + S);
    double worst = 0.0;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < width; ++j) {
            const double ref = want[t * width + j], g = f16_bits_to_f32(got[t * ld + j]);
            const double tol = std::ldexp(vmax, -10) + std::ldexp(std::fabs(ref), -10) + 1e-6;
            worst = std::max(worst, std::fabs(g - ref) / tol);
            ASSERT_LE(std::fabs(g - ref), tol) << what << ": token " << t << " col " << j << " ref " << ref;
        }
    std::printf("[ kv4_attention ] %s: worst error %.3f of the tolerance\n", what, worst);
}

class CudaKv4Attention : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(CudaKv4Attention, CacheWriteMatchesTwin) {
    std::mt19937 rng(11);
    Stream s = Stream::create();
    for (const KvCacheFormat f : {KvCacheFormat::kInt4, KvCacheFormat::kF16})
        for (const int d : {64, 128}) {
            Cache c(f, 3, 2, d, 64);
            write_and_check(c, 5, 37, rng, s);
            write_and_check(c, 42, 1, rng, s);
        }
}

TEST_F(CudaKv4Attention, DecodeMatchesTwin) {
    std::mt19937 rng(12);
    Stream s = Stream::create();
    struct Case { int batch, kv_heads, group, d; int64_t n_keys; };
    const Case cases[] = {{2, 2, 4, 128, 1000}, {1, 4, 1, 128, 2049}, {3, 2, 2, 64, 300}, {2, 1, 8, 64, 77},
                          {1, 2, 4, 64, 1}};
    for (const KvCacheFormat f : {KvCacheFormat::kInt4, KvCacheFormat::kF16})
        for (const Case &k : cases) {
            Cache c(f, k.batch, k.kv_heads, k.d, k.n_keys + 3);
            write_and_check(c, 0, k.n_keys, rng, s);
            for (const int splits : {0, 1, 3}) {
                fq::cuda::detail::attention_set_decode_splits(splits);
                char what[160];
                std::snprintf(what, sizeof what, "decode %s B=%d Hk=%d G=%d d=%d keys=%lld splits=%d",
                              f == KvCacheFormat::kInt4 ? "int4" : "f16", k.batch, k.kv_heads, k.group, k.d,
                              static_cast<long long>(k.n_keys), splits);
                check_attention(c, k.kv_heads * k.group, 1, k.n_keys - 1, rng, s, what);
            }
            fq::cuda::detail::attention_set_decode_splits(0);
        }
}

TEST_F(CudaKv4Attention, PrefillMatchesTwin) {
    std::mt19937 rng(13);
    Stream s = Stream::create();
    struct Case { int batch, kv_heads, group, d; int64_t prefix, S; };
    const Case cases[] = {{2, 2, 2, 128, 0, 150}, {1, 2, 1, 128, 37, 300}, {2, 1, 4, 64, 65, 129}, {1, 2, 2, 64, 0, 2}};
    for (const KvCacheFormat f : {KvCacheFormat::kInt4, KvCacheFormat::kF16})
        for (const Case &k : cases) {
            Cache c(f, k.batch, k.kv_heads, k.d, k.prefix + k.S + 5);
            if (k.prefix > 0) write_and_check(c, 0, k.prefix, rng, s);
            write_and_check(c, k.prefix, k.S, rng, s);
            char what[160];
            std::snprintf(what, sizeof what, "prefill %s B=%d Hk=%d G=%d d=%d prefix=%lld S=%lld",
                          f == KvCacheFormat::kInt4 ? "int4" : "f16", k.batch, k.kv_heads, k.group, k.d,
                          static_cast<long long>(k.prefix), static_cast<long long>(k.S));
            check_attention(c, k.kv_heads * k.group, k.S, k.prefix, rng, s, what);
        }
}

TEST(CudaKv4AttentionArgs, RejectsBadArguments) {
    KvCacheView c;
    c.batch = 1;
    c.kv_heads = 2;
    c.head_dim = 96;
    c.capacity = 16;
    fq::cuda::AttentionArgs a;
    a.n_heads = 4;
    a.n_q = 1;
    a.scale = 0.1f;
    a.ld_q = a.ld_out = 4 * 96;
    const Stream s;
    try {
        fq::cuda::attention(c, a, nullptr, 0, s);
        ADD_FAILURE() << "head_dim 96 accepted";
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), FQ_STATUS_UNSUPPORTED) << e.what();
    }
    c.head_dim = 64;
    a.n_heads = 10;  // group 5: no decode kernel is compiled for it
    a.ld_q = a.ld_out = 10 * 64;
    EXPECT_THROW(fq::cuda::attention_workspace_bytes(c, a), fq::Error);
}

}  // namespace

#endif  // FQ_HAVE_CUDA

// The whole-model GPU engine (native/src/cuda/decoder_engine.h): accuracy of the real W4A4 kernels against the
// fake-quantized model, and tokens per second of W4A4 against the FP16 engine of the same kernels, in one run.
//
//   bench_engine --model M.gguf --text wikitext2-test.txt [--artifact A | --method rotate|rtn] [--ppl-windows N]
//                [--batches 1,8,32] [--prompt 512] [--gen 64] [--graphs]
//   bench_engine --random-7b [--layers 32] [--batches ...] [--prompt ...] [--gen ...] [--graphs]
//
// Accuracy (with --model and --text): perplexity at seqlen 2048 over the text's windows of
//   - the fake-quantized model on the GPU (FP32, quant::quantized_forward's twin: the calibration's numbers),
//   - the W4A4 engine (INT4 GEMMs, FP16 activations and transforms, 4-bit KV cache),
//   - full precision in FP32 on the GPU and the FP16 engine.
// Speed: for each batch size B, prefill of B prompts of --prompt tokens (one step call), then --gen single-token
// decode steps; every step returns with the logits of each sequence on the host (what a session pays). Both engines
// use cuBLAS for FP16 products (the FP16 engine's layers, both engines' output projection). --graphs repeats the
// timing with every decode step captured as a CUDA graph.
// --random-7b: a LLaMA-2-7B-shaped model (E 4096, F 11008, 32 heads of 128, vocab 32000) with random weights and
// random orthogonal transforms, for speed only.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "cuda/cuda_backend.h"
#include "cuda/decoder_engine.h"
#include "cuda/window_evaluator.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "quant/artifact.h"
#include "quant/calibrate.h"
#include "quant/reparameterize.h"

namespace {

using fq::cuda::DecoderEngine;
using Clock = std::chrono::steady_clock;

#define CUBLAS_CHECK(expr)                                                                   \
    do {                                                                                     \
        const cublasStatus_t st_ = (expr);                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                  \
            std::fprintf(stderr, "%s failed: %d (%s:%d)\n", #expr, (int)st_, __FILE__, __LINE__); \
            std::exit(1);                                                                    \
        }                                                                                    \
    } while (0)

struct Args {
    std::string model, text, artifact, method = "rotate";
    bool random_7b = false, graphs = false;
    int layers = 32;
    int64_t ppl_windows = -1, prompt = 512, gen = 64;
    std::vector<int> batches{1, 8, 32};
};

std::vector<int> parse_list(const std::string &s) {
    std::vector<int> v;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) v.push_back(std::atoi(item.c_str()));
    return v;
}

Args parse(int argc, char **argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", k.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (k == "--model") a.model = val();
        else if (k == "--text") a.text = val();
        else if (k == "--artifact") a.artifact = val();
        else if (k == "--method") a.method = val();
        else if (k == "--random-7b") a.random_7b = true;
        else if (k == "--graphs") a.graphs = true;
        else if (k == "--layers") a.layers = std::atoi(val().c_str());
        else if (k == "--ppl-windows") a.ppl_windows = std::atoll(val().c_str());
        else if (k == "--prompt") a.prompt = std::atoll(val().c_str());
        else if (k == "--gen") a.gen = std::atoll(val().c_str());
        else if (k == "--batches") a.batches = parse_list(val());
        else {
            std::fprintf(stderr, "unknown argument %s (see the top of bench_engine.cu)\n", k.c_str());
            std::exit(2);
        }
    }
    return a;
}

// A random LLaMA-2-7B-shaped full-precision model (one layer's weights repeated) with no tokenizer.
std::unique_ptr<fq::Model> random_7b(int layers) {
    auto m = std::make_unique<fq::Model>();
    fq::ModelConfig &c = m->config;
    c.architecture = "llama";
    c.name = "random LLaMA-2-7B shape";
    c.n_vocab = 32000, c.n_ctx_train = 4096, c.n_embd = 4096, c.n_layer = layers, c.n_head = 32, c.n_head_kv = 32;
    c.head_dim = 128, c.n_ff = 11008, c.rope_dim = 128, c.rms_eps = 1e-5f;
    // Uniform values of unit variance from a xorshift generator: the speed of the kernels does not depend on the
    // distribution, and 6.7 billion normal draws would take minutes.
    uint64_t state = 0x9E3779B97F4A7C15ull;
    auto randn = [&](size_t n, float scale) {
        std::vector<float> v(n);
        const float k = scale * 1.7320508f / 2147483648.0f;  // uniform on [-sqrt(3), sqrt(3)] * scale
        for (float &x : v) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            x = k * static_cast<float>(static_cast<int32_t>(state >> 32));
        }
        return v;
    };
    const size_t E = 4096, F = 11008;
    fq::LayerWeights L;
    L.attn_norm.assign(E, 1.0f);
    L.ffn_norm.assign(E, 1.0f);
    const float se = 1.0f / std::sqrt(float(E)), sf = 1.0f / std::sqrt(float(F));
    L.wq = randn(E * E, se), L.wk = randn(E * E, se), L.wv = randn(E * E, se), L.wo = randn(E * E, se);
    L.w_gate = randn(F * E, se), L.w_up = randn(F * E, se), L.w_down = randn(E * F, sf);
    m->weights.layers.assign(static_cast<size_t>(layers), L);
    m->weights.tok_embd = randn(32000 * E, 1.0f);
    m->weights.output_norm.assign(E, 1.0f);
    m->weights.output = randn(32000 * E, se);
    // Calibration results carry the model file's fingerprint: a stand-in file.
    m->source.path = "/tmp/bench_engine_random_7b.id";
    std::ofstream(m->source.path) << "random LLaMA-2-7B shape, " << layers << " layers\n";
    return m;
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void time_engine(DecoderEngine &e, const Args &a, const char *label) {
    std::mt19937 g(1);
    for (int B : a.batches) {
        const int64_t cap = a.prompt + a.gen;
        std::unique_ptr<fq::cuda::EngineCache> cache;
        try {
            cache = e.make_cache(B, cap);
        } catch (const fq::Error &err) {
            std::printf("%-11s B=%-3d skipped: %s\n", label, B, err.what());
            continue;
        }
        std::vector<int32_t> prompt(static_cast<size_t>(B * a.prompt)), next(static_cast<size_t>(B));
        for (auto &t : prompt) t = static_cast<int32_t>(g() % static_cast<unsigned>(e.n_vocab()));
        std::vector<float> logits(static_cast<size_t>(B) * e.n_vocab());
        // Warm-up (first launches, workspace growth), then the timed run.
        e.step(*cache, prompt.data(), a.prompt, logits.data());
        for (int i = 0; i < 3; ++i) e.step(*cache, prompt.data(), 1, logits.data());
        cache->reset();
        auto t0 = Clock::now();
        e.step(*cache, prompt.data(), a.prompt, logits.data());
        const double prefill_ms = ms_since(t0);
        std::vector<double> steps;
        for (int64_t s = 0; s < a.gen; ++s) {
            for (int b = 0; b < B; ++b) {
                const float *row = logits.data() + static_cast<size_t>(b) * e.n_vocab();
                next[static_cast<size_t>(b)] = static_cast<int32_t>(std::max_element(row, row + e.n_vocab()) - row);
            }
            t0 = Clock::now();
            e.step(*cache, next.data(), 1, logits.data());
            steps.push_back(ms_since(t0));
        }
        std::sort(steps.begin(), steps.end());
        const double med = steps[steps.size() / 2];
        std::printf("%-11s B=%-3d prefill %6lld tok: %9.2f ms (%9.0f tok/s) | decode at KV %lld..%lld: median "
                    "%7.3f ms/step (%8.0f tok/s), p90 %7.3f ms\n",
                    label, B, (long long)(B * a.prompt), prefill_ms, 1e3 * B * a.prompt / prefill_ms,
                    (long long)a.prompt, (long long)cap, med, 1e3 * B / med, steps[steps.size() * 9 / 10]);
        std::fflush(stdout);
    }
}

}  // namespace

int main(int argc, char **argv) {
    const Args a = parse(argc, argv);
    if (a.model.empty() && !a.random_7b) {
        std::fprintf(stderr, "give --model M.gguf or --random-7b (see the top of bench_engine.cu)\n");
        return 2;
    }
    if (fq::cuda::device_count() == 0) {
        std::fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    try {
        fq::ThreadPool pool(0);
        cublasHandle_t blas = nullptr;
        CUBLAS_CHECK(cublasCreate(&blas));
        fq::cuda::DeviceBuffer blas_ws(64u << 20);
        CUBLAS_CHECK(cublasSetWorkspace(blas, blas_ws.data(), blas_ws.n_bytes()));
        // d (m, n) = a (m, k) . w (n, k)^T row-major = column-major d^T = op(W) a^T with op = T.
        fq::cuda::GemmF16Fn gemm = [blas](uint16_t *d, const uint16_t *x, const uint16_t *w, int64_t m, int64_t n,
                                          int64_t k, const fq::cuda::Stream &s) {
            const float alpha = 1.0f, beta = 0.0f;
            CUBLAS_CHECK(cublasSetStream(blas, static_cast<cudaStream_t>(s.handle())));
            CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                      static_cast<int>(k), &alpha, w, CUDA_R_16F, static_cast<int>(k), x, CUDA_R_16F,
                                      static_cast<int>(k), &beta, d, CUDA_R_16F, static_cast<int>(n),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        };
        const fq::cuda::DeviceProperties prop = fq::cuda::device_properties(0);
        std::printf("device: %s (sm_%d%d)\n", prop.name.c_str(), prop.sm_major, prop.sm_minor);

        std::unique_ptr<fq::Model> model;
        if (a.random_7b) {
            auto t0 = Clock::now();
            model = random_7b(a.layers);
            std::printf("model: %s, %d layers (built in %.1f s)\n", model->config.name.c_str(), a.layers,
                        ms_since(t0) / 1e3);
        } else {
            fq::LoadOptions lo;
            model = fq::load_gguf_model(a.model, lo);
            std::printf("model: %s (%s)\n", model->config.name.c_str(), a.model.c_str());
        }
        namespace q = fq::quant;
        q::CalibrationResult r;
        if (!a.artifact.empty()) {
            r = q::load_artifact(a.artifact, *model);
        } else {
            q::QuantScheme s;
            s.bits = q::parse_bits("w4a4kv4");
            s.method = q::parse_method(a.method);
            r = q::calibrate(*model, pool, {}, s, q::CalibOptions(), fq::Progress());
        }
        auto t0 = Clock::now();
        std::unique_ptr<q::QuantizedModel> qm = q::build_quantized_model(*model, pool, r, {}, fq::Progress());
        std::printf("quantized model: %s %s weights %s (%.1f s)\n", q::bits_name(r.scheme.bits).c_str(),
                    q::method_name(r.scheme.method), q::weight_quantizer_name(r.scheme.weights), ms_since(t0) / 1e3);

        t0 = Clock::now();
        auto w4 = DecoderEngine::w4a4(*qm, 0, gemm);
        std::printf("W4A4 engine: %.2f GB of weights on the device (%.1f s)\n", w4->weight_bytes() / 1e9,
                    ms_since(t0) / 1e3);
        std::unique_ptr<DecoderEngine> f16;
        if (a.random_7b) qm.reset();  // host memory: the FP16 engine needs the FP32 model only
        f16 = DecoderEngine::f16(*model, 0, gemm);
        std::printf("FP16 engine: %.2f GB of weights on the device\n", f16->weight_bytes() / 1e9);

        if (!a.text.empty() && qm) {
            std::ifstream in(a.text, std::ios::binary);
            if (!in) throw fq::Error(FQ_STATUS_NOT_FOUND, "cannot open " + a.text);
            std::stringstream ss;
            ss << in.rdbuf();
            const std::vector<int32_t> tok = model->tokenizer->encode(ss.str(), model->tokenizer->add_bos_default());
            const int32_t seqlen = std::min(2048, model->config.n_ctx_train);
            auto ppl = [&](fq::cuda::WindowEvaluator &ev) {
                auto t = Clock::now();
                const fq::WindowsScoreFn score = [&ev](const int32_t *tk, const int32_t *tg, int64_t n_seq,
                                                       int64_t len, double *nll, int32_t *am) {
                    ev.score(tk, tg, n_seq, len, nll, am);
                };
                fq::PerplexityResult res = fq::perplexity(model->config, score, tok, seqlen, a.ppl_windows,
                                                          fq::Progress(), ev.preferred_batch(seqlen));
                std::printf("    %lld windows of %d tokens, %.1f s\n", (long long)res.n_chunks, seqlen,
                            ms_since(t) / 1e3);
                return res.ppl;
            };
            auto fake = fq::cuda::make_window_evaluator(*qm, 0);
            const double p_fake = ppl(*fake);
            fake.reset();
            const double p_w4 = ppl(*w4);
            std::printf("perplexity (%s): fake-quantized (FP32 GPU) %.4f | W4A4 engine %.4f | relative difference "
                        "%+.3f%%\n",
                        a.text.c_str(), p_fake, p_w4, 100.0 * (p_w4 / p_fake - 1.0));
            q::QuantScheme fp;
            fp.bits = q::parse_bits("w16a16");
            fp.method = q::Method::Rtn;
            q::CalibrationResult rf = q::calibrate(*model, pool, {}, fp, q::CalibOptions(), fq::Progress());
            auto view = q::build_quantized_model(*model, pool, rf, {}, fq::Progress());
            auto fp32 = fq::cuda::make_window_evaluator(*view, 0);
            const double p_fp32 = ppl(*fp32);
            fp32.reset();
            const double p_f16 = ppl(*f16);
            std::printf("perplexity: full precision FP32 (GPU) %.4f | FP16 engine %.4f | relative difference %+.3f%%\n",
                        p_fp32, p_f16, 100.0 * (p_f16 / p_fp32 - 1.0));
            std::fflush(stdout);
        }
        time_engine(*f16, a, "fp16");
        time_engine(*w4, a, "w4a4");
        if (a.graphs) {  // the same with each decode step captured as a CUDA graph (what that costs or saves)
            f16->set_decode_graphs(true);
            w4->set_decode_graphs(true);
            time_engine(*f16, a, "fp16-graph");
            time_engine(*w4, a, "w4a4-graph");
        }
        cublasDestroy(blas);
    } catch (const fq::Error &e) {
        std::fprintf(stderr, "bench_engine: %s\n", e.what());
        return 1;
    }
    return 0;
}

// decode_latency: the prefill and per-token decode steps of DecodeBenchmark / PrefillBenchmark, timed from C++
// through the same C ABI, so that the Java numbers can be split into "the step" and "the way to it from Java".
//
// It reproduces the Java benchmarks' inputs exactly: the same model file, the first 64 KiB of the WikiText-2 test
// text tokenized with the model's default BOS rule (benchmarks/.../Bench.prompt), the same KV-cache positions
// ([context, context + window), then a rewind to `context` that is not timed) and the same call,
// fq_session_decode with a logits buffer of n_vocab floats (on a GPU the copy into it waits for the step's kernels).
// Each call is timed with steady_clock; the first `warmup_ms` of calls are discarded.
//
// Build (from the repository root, after ./flatquant build; one command line):
//   g++ -std=c++17 -O2 -Wall -Wextra -Inative/include benchmarks/native/decode_latency.cpp
//       -Lbuild/native -lflatquant -Wl,-rpath,$PWD/build/native -o build/decode_latency
// Run:
//   build/decode_latency --model data/models/stories260K.gguf [--device cpu|N] [--threads 0] [--context 128]
//       [--window 64] [--samples 5000] [--prompt 128] [--prefills 50] [--warmup-ms 2000]
//       [--text data/wikitext-2-raw/wiki.test.raw]
#include <flatquant.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string model;
    std::string text = "data/wikitext-2-raw/wiki.test.raw";
    int device = FQ_DEVICE_CPU;
    int threads = 0;
    int context = 128;
    int window = 64;
    int samples = 5000;
    int prompt = 128;
    int prefills = 50;
    int warmup_ms = 2000;
};

[[noreturn]] void die(const std::string &what, const fq_error *err = nullptr) {
    std::fprintf(stderr, "decode_latency: %s%s%s\n", what.c_str(), err ? ": " : "", err ? err->message : "");
    std::exit(1);
}

void check(int32_t status, const fq_error &err, const char *what) {
    if (status != FQ_STATUS_OK) die(std::string(what) + " failed (" + fq_status_name(status) + ")", &err);
}

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("option " + a + " needs a value");
        std::string v = argv[++i];
        if (a == "--model") o.model = v;
        else if (a == "--text") o.text = v;
        else if (a == "--device") o.device = v == "cpu" ? FQ_DEVICE_CPU : std::atoi(v.c_str());
        else if (a == "--threads") o.threads = std::atoi(v.c_str());
        else if (a == "--context") o.context = std::atoi(v.c_str());
        else if (a == "--window") o.window = std::atoi(v.c_str());
        else if (a == "--samples") o.samples = std::atoi(v.c_str());
        else if (a == "--prompt") o.prompt = std::atoi(v.c_str());
        else if (a == "--prefills") o.prefills = std::atoi(v.c_str());
        else if (a == "--warmup-ms") o.warmup_ms = std::atoi(v.c_str());
        else die("unknown option " + a);
    }
    if (o.model.empty()) die("--model is required");
    if (o.context < 1 || o.window < 1 || o.samples < 1 || o.prompt < 1 || o.prefills < 1) die("sizes must be >= 1");
    return o;
}

// The first 64 KiB of the text, as Bench.text() reads it; a built-in paragraph when the file is missing.
std::string read_text(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (s.empty()) {
        std::string p = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
                        "One day, she saw a big red ball in the park and ran to kick it. ";
        for (int i = 0; i < 400; i++) s += p;
        return s;
    }
    return s.substr(0, std::min<size_t>(s.size(), 64 * 1024));
}

// n tokens of the text, repeated when it is shorter (Bench.prompt).
std::vector<int32_t> tokens(fq_model *model, const std::string &text, int n) {
    fq_error err;
    fq_error_init(&err);
    std::vector<int32_t> ids(text.size() + 2);  // the header's bound: one id per byte, plus BOS, plus one
    int64_t count = 0;
    check(fq_model_tokenize(model, text.data(), static_cast<int64_t>(text.size()), FQ_BOS_DEFAULT, ids.data(),
                            static_cast<int64_t>(ids.size()), &count, &err),
          err, "fq_model_tokenize");
    if (count == 0) die("the text has no tokens");
    std::vector<int32_t> out;
    while (static_cast<int>(out.size()) < n) out.push_back(ids[out.size() % static_cast<size_t>(count)]);
    return out;
}

double percentile(std::vector<double> v, double p) {  // nearest rank on a sorted copy
    std::sort(v.begin(), v.end());
    size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()));
    return v[std::min(rank, v.size() - 1)];
}

void report(const char *what, const char *unit, const std::vector<double> &v) {
    double mean = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    std::printf("%-8s n=%-6zu mean %9.2f  p50 %9.2f  p90 %9.2f  p99 %9.2f  max %9.2f  %s\n", what, v.size(), mean,
                percentile(v, 50), percentile(v, 90), percentile(v, 99), percentile(v, 100), unit);
}

}  // namespace

int main(int argc, char **argv) {
    Options o = parse(argc, argv);
    fq_error err;
    fq_error_init(&err);

    fq_runtime_options ro;
    fq_runtime_options_init(&ro);
    ro.n_threads = o.threads;
    ro.device = o.device;
    fq_runtime *rt = nullptr;
    check(fq_runtime_create(&ro, &rt, &err), err, "fq_runtime_create");
    fq_model_options mo;
    fq_model_options_init(&mo);
    fq_model *model = nullptr;
    check(fq_model_load(rt, o.model.c_str(), &mo, &model, &err), err, "fq_model_load");
    fq_model_info info;
    fq_model_info_init(&info);
    check(fq_model_get_info(model, &info, &err), err, "fq_model_get_info");

    std::string text = read_text(o.text);
    std::vector<int32_t> seq = tokens(model, text, o.context + 4 * o.window);
    std::vector<int32_t> prompt = tokens(model, text, o.prompt);
    std::vector<float> logits(static_cast<size_t>(info.n_vocab));  // [n_vocab], the last position's logits

    fq_session_options so;
    fq_session_options_init(&so);
    so.n_ctx = std::max(o.context + o.window, o.prompt);
    fq_session *s = nullptr;
    check(fq_session_create(model, &so, &s, &err), err, "fq_session_create");

    auto rewind = [&] {
        check(fq_session_reset(s, &err), err, "fq_session_reset");
        check(fq_session_decode(s, seq.data(), o.context, nullptr, 0, &err), err, "fq_session_decode (prefix)");
    };
    auto micros = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::micro>(b - a).count();
    };

    // Decode: one token at positions [context, context + window).
    std::vector<double> decode_us;
    decode_us.reserve(static_cast<size_t>(o.samples));
    Clock::time_point warm_until = Clock::now() + std::chrono::milliseconds(o.warmup_ms);
    int pos = o.context;
    rewind();
    while (static_cast<int>(decode_us.size()) < o.samples) {
        if (pos >= o.context + o.window) {
            rewind();
            pos = o.context;
        }
        Clock::time_point t0 = Clock::now();
        check(fq_session_decode(s, &seq[static_cast<size_t>(pos)], 1, logits.data(), info.n_vocab, &err), err,
              "fq_session_decode");
        Clock::time_point t1 = Clock::now();
        pos++;
        if (t0 >= warm_until) decode_us.push_back(micros(t0, t1));
    }

    // Prefill: reset, then the whole prompt in one call (reset inside the timed region, as in PrefillBenchmark).
    std::vector<double> prefill_ms;
    for (int i = 0; i < o.prefills + 3; i++) {
        Clock::time_point t0 = Clock::now();
        check(fq_session_reset(s, &err), err, "fq_session_reset");
        check(fq_session_decode(s, prompt.data(), o.prompt, logits.data(), info.n_vocab, &err), err,
              "fq_session_decode (prefill)");
        Clock::time_point t1 = Clock::now();
        if (i >= 3) prefill_ms.push_back(micros(t0, t1) / 1000.0);
    }

    std::printf("model %s (%s, vocab %d), device %s, threads %d, decode positions [%d, %d), prefill %d tokens\n",
                o.model.c_str(), info.architecture, info.n_vocab, o.device == FQ_DEVICE_CPU ? "cpu" : "cuda",
                fq_runtime_n_threads(rt), o.context, o.context + o.window, o.prompt);
    report("decode", "us", decode_us);
    report("prefill", "ms", prefill_ms);

    fq_session_free(s);
    fq_model_free(model);
    fq_runtime_free(rt);
    return 0;
}

// save_quantized: makes a quantized-model file from a GGUF model and a calibration artifact through the C ABI (what
// `./flatquant quantize` does from Java), for machines without a Java runtime, e.g. to stage a quantized model on
// the GPU machine for the JMH and decode-latency runs.
//
// Build (from the repository root, one command line):
//   g++ -std=c++17 -O2 -Wall -Wextra -Inative/include benchmarks/native/save_quantized.cpp
//       -Lbuild/native -lflatquant -Wl,-rpath,$PWD/build/native -o build/save_quantized
// Run:
//   build/save_quantized MODEL.gguf ARTIFACT.safetensors OUT.gguf      (ARTIFACT "-": rtn w4a4kv4, no artifact)
#include <flatquant.h>

#include <cstdio>
#include <cstring>

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: save_quantized MODEL.gguf ARTIFACT|- OUT.gguf\n");
        return 2;
    }
    fq_error err;
    std::memset(&err, 0, sizeof(err));
    fq_runtime *rt = nullptr;
    fq_model *base = nullptr, *q = nullptr;
    int status = fq_runtime_create(nullptr, &rt, &err);
    if (status == FQ_STATUS_OK) status = fq_model_load(rt, argv[1], nullptr, &base, &err);
    if (status == FQ_STATUS_OK) {
        fq_quantize_options o;
        fq_quantize_options_init(&o);
        if (std::strcmp(argv[2], "-") != 0) o.artifact = argv[2];
        status = fq_model_quantize(base, &o, &q, &err);
    }
    if (status == FQ_STATUS_OK) status = fq_model_save_quantized(q, argv[3], nullptr, nullptr, nullptr, &err);
    if (status == FQ_STATUS_OK) {
        fq_model_info info;
        fq_model_info_init(&info);
        fq_model_get_info(q, &info, nullptr);
        std::printf("%s: %s %s, weights %s\n", argv[3], info.quant, info.method, info.weight_quantizer);
    } else {
        std::fprintf(stderr, "save_quantized: %s: %s\n", fq_status_name(status), err.message);
    }
    fq_model_free(q);
    fq_model_free(base);
    fq_runtime_free(rt);
    return status == FQ_STATUS_OK ? 0 : 1;
}

// quant_table: the accuracy table of the calibration issue, through the C ABI: for every row (full precision, RTN,
// rotation, FlatQuant with RTN weights, FlatQuant with GPTQ weights) at every bit width, calibrate when the row needs
// it (on the runtime's GPU when --device is a CUDA ordinal), quantize, and evaluate the perplexity of each text.
// Prints one JSON object per row and evaluation on stdout (and progress on stderr), then a Markdown table.
//
// The texts are plain UTF-8 files as tools/device/make_eval_texts.py writes them (the same texts as
// `./flatquant ppl --text wikitext2-test|c4`).
//
// Build (from the repository root, after ./flatquant build; one command line):
//   g++ -std=c++17 -O2 -Wall -Wextra -Inative/include benchmarks/native/quant_table.cpp
//       -Lbuild/native -lflatquant -Wl,-rpath,$PWD/build/native -o build/quant_table
// Run:
//   build/quant_table --model M.gguf --calib wikitext2-validation.txt --eval wikitext2=wikitext2-test.txt
//       [--eval c4=c4.txt] [--bits w4a4kv4,w4a16] [--rows fp,rtn,rotate,flatquant,flatquant-gptq]
//       [--device cpu|N] [--threads 0] [--out-dir DIR] [--nsamples 128] [--seqlen 2048] [--epochs 15]
//       [--eval-seqlen 2048] [--max-chunks -1] [--c4-chunks 256]
#include <flatquant.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Options {
    std::string model, calib, out_dir = ".";
    std::vector<std::pair<std::string, std::string>> evals;  // name, file
    std::vector<std::string> bits{"w4a4kv4", "w4a16"};
    std::vector<std::string> rows{"fp", "rtn", "rotate", "flatquant", "flatquant-gptq"};
    int device = FQ_DEVICE_CPU, threads = 0;
    int nsamples = 128, seqlen = 2048, epochs = 15, eval_seqlen = 2048;
    long long max_chunks = -1, c4_chunks = 256;
};

[[noreturn]] void die(const std::string &msg) {
    std::fprintf(stderr, "quant_table: %s\n", msg.c_str());
    std::exit(1);
}

void check(int32_t status, const fq_error &err, const std::string &what) {
    if (status != FQ_STATUS_OK) die(what + ": " + fq_status_name(status) + ": " + err.message);
}

std::vector<std::string> split(const std::string &s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

std::string read_text(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) die("cannot read " + path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die(a + " needs a value");
            return argv[++i];
        };
        if (a == "--model") o.model = value();
        else if (a == "--calib") o.calib = value();
        else if (a == "--out-dir") o.out_dir = value();
        else if (a == "--eval") {
            std::string v = value();
            size_t eq = v.find('=');
            if (eq == std::string::npos) die("--eval wants NAME=FILE");
            o.evals.emplace_back(v.substr(0, eq), v.substr(eq + 1));
        } else if (a == "--bits") o.bits = split(value());
        else if (a == "--rows") o.rows = split(value());
        else if (a == "--device") {
            std::string v = value();
            o.device = v == "cpu" ? FQ_DEVICE_CPU : std::atoi(v.c_str());
        } else if (a == "--threads") o.threads = std::atoi(value().c_str());
        else if (a == "--nsamples") o.nsamples = std::atoi(value().c_str());
        else if (a == "--seqlen") o.seqlen = std::atoi(value().c_str());
        else if (a == "--epochs") o.epochs = std::atoi(value().c_str());
        else if (a == "--eval-seqlen") o.eval_seqlen = std::atoi(value().c_str());
        else if (a == "--max-chunks") o.max_chunks = std::atoll(value().c_str());
        else if (a == "--c4-chunks") o.c4_chunks = std::atoll(value().c_str());
        else die("unknown option " + a);
    }
    if (o.model.empty() || o.evals.empty()) die("--model and at least one --eval are required");
    return o;
}

int32_t print_progress(void *, const char *stage, int64_t done, int64_t total) {
    static std::string last_stage;
    static int last_pct = -1;
    int pct = total > 0 ? static_cast<int>(100 * done / total) : 100;
    if (stage != last_stage || pct / 10 != last_pct / 10 || done == total) {
        std::fprintf(stderr, "  %s %lld/%lld\n", stage, (long long)done, (long long)total);
        last_stage = stage;
        last_pct = pct;
    }
    return 0;
}

void print_epoch(void *, const fq_calibration_event *e) {
    if (e->epoch == e->n_epochs || e->epoch == 1)
        std::fprintf(stderr, "  layer %d/%d epoch %d/%d mse %.6g (%.2f s)\n", e->layer + 1, e->n_layer, e->epoch,
                     e->n_epochs, e->mse, e->seconds);
}

}  // namespace

int main(int argc, char **argv) {
    const Options o = parse(argc, argv);
    fq_error err;
    fq_error_init(&err);
    fq_runtime_options ro;
    fq_runtime_options_init(&ro);
    ro.device = o.device;
    ro.n_threads = o.threads;
    fq_runtime *rt = nullptr;
    check(fq_runtime_create(&ro, &rt, &err), err, "runtime");
    fq_model *base = nullptr;
    auto t_load = std::chrono::steady_clock::now();
    check(fq_model_load(rt, o.model.c_str(), nullptr, &base, &err), err, "load " + o.model);
    std::fprintf(stderr, "loaded %s in %.1f s\n", o.model.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
    const std::string calib_text = o.calib.empty() ? std::string() : read_text(o.calib);
    std::map<std::string, std::string> texts;
    for (const auto &[name, file] : o.evals) texts[name] = read_text(file);

    // table[row label][eval name] = ppl
    std::vector<std::string> labels;
    std::map<std::string, std::map<std::string, double>> table;
    std::map<std::string, double> calib_seconds;
    auto evaluate = [&](const fq_model *m, const std::string &label, const std::string &bits, const std::string &row) {
        labels.push_back(label);
        for (const auto &[name, file] : o.evals) {
            fq_perplexity_options po;
            fq_perplexity_options_init(&po);
            po.seqlen = o.eval_seqlen;
            po.max_chunks = name == "c4" ? o.c4_chunks : o.max_chunks;
            po.progress = print_progress;
            fq_perplexity_result pr;
            fq_perplexity_result_init(&pr);
            const std::string &text = texts[name];
            check(fq_model_perplexity(m, text.data(), (int64_t)text.size(), &po, &pr, &err), err,
                  "perplexity " + label + " " + name);
            table[label][name] = pr.ppl;
            std::printf("{\"row\":\"%s\",\"bits\":\"%s\",\"eval\":\"%s\",\"seqlen\":%d,\"windows\":%lld,"
                        "\"ppl\":%.4f,\"eval_seconds\":%.2f,\"calibration_seconds\":%.1f}\n",
                        row.c_str(), bits.c_str(), name.c_str(), o.eval_seqlen, (long long)pr.n_chunks, pr.ppl,
                        pr.seconds, calib_seconds.count(label) ? calib_seconds[label] : 0.0);
            std::fflush(stdout);
        }
    };

    for (const std::string &row : o.rows) {
        if (row == "fp") {
            evaluate(base, "FP", "w16a16", row);
            continue;
        }
        for (const std::string &bits : o.bits) {
            const bool learned = row.rfind("flatquant", 0) == 0;
            const bool gptq = row.size() > 5 && row.compare(row.size() - 5, 5, "-gptq") == 0;
            const std::string method = learned ? "flatquant" : row == "rotate" ? "rotate" : "rtn";
            const std::string label = row + " " + bits;
            fq_model *qm = nullptr;
            fq_quantize_options qo;
            fq_quantize_options_init(&qo);
            qo.quant = bits.c_str();
            qo.method = method.c_str();
            qo.progress = print_progress;
            std::string artifact;
            if (learned || gptq) {
                artifact = o.out_dir + "/" + row + "-" + bits + ".safetensors";
                fq_calibration_options co;
                fq_calibration_options_init(&co);
                co.quant = bits.c_str();
                co.method = method.c_str();
                co.weights = gptq ? "gptq" : "rtn";
                co.nsamples = o.nsamples;
                co.seqlen = o.seqlen;
                co.epochs = o.epochs;
                co.progress = print_progress;
                co.log = print_epoch;
                // FlatQuant with GPTQ weights keeps the transforms of the FlatQuant row when there is one (the
                // official pipeline: calibrate, then GPTQ on the same windows) instead of learning them again.
                const std::string learned_artifact = o.out_dir + "/flatquant-" + bits + ".safetensors";
                if (learned && gptq && calib_seconds.count("flatquant " + bits))
                    co.base_artifact = learned_artifact.c_str();
                fq_calibration_result cr;
                fq_calibration_result_init(&cr);
                std::fprintf(stderr, "calibrating %s -> %s\n", label.c_str(), artifact.c_str());
                check(fq_calibrate(base, calib_text.data(), (int64_t)calib_text.size(), artifact.c_str(), &co, &cr,
                                   &err),
                      err, "calibrate " + label);
                calib_seconds[label] = cr.seconds + (co.base_artifact ? calib_seconds["flatquant " + bits] : 0.0);
                std::fprintf(stderr, "calibrated %s in %.1f s (%s, final mse %.6g)\n", label.c_str(), cr.seconds,
                             cr.on_gpu ? "GPU" : "CPU", cr.final_mse);
                qo.artifact = artifact.c_str();
            }
            check(fq_model_quantize(base, &qo, &qm, &err), err, "quantize " + label);
            evaluate(qm, label, bits, row);
            fq_model_free(qm);
        }
    }

    std::printf("\n| row |");
    for (const auto &e : o.evals) std::printf(" %s |", e.first.c_str());
    std::printf(" calibration s |\n|---|");
    for (size_t i = 0; i < o.evals.size(); ++i) std::printf("---|");
    std::printf("---|\n");
    for (const std::string &label : labels) {
        std::printf("| %s |", label.c_str());
        for (const auto &e : o.evals) std::printf(" %.2f |", table[label][e.first]);
        if (calib_seconds.count(label)) std::printf(" %.0f |\n", calib_seconds[label]);
        else std::printf(" - |\n");
    }
    fq_model_free(base);
    fq_runtime_free(rt);
    return 0;
}

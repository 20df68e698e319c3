// Where tests find their data: the repository (FQ_SOURCE_DIR, set by CTest and compiled in as a fallback), the
// shared data folder beside it, and the default model (FQ_SMOLLM2_GGUF, set by ./flatquant test).
#pragma once

#include <cstdlib>
#include <fstream>
#include <string>

namespace fq::test {

inline std::string source_dir() {
    const char *env = std::getenv("FQ_SOURCE_DIR");
    if (env && *env) return env;
#ifdef FQ_SOURCE_DIR
    return FQ_SOURCE_DIR;
#else
    return ".";
#endif
}

inline bool file_exists(const std::string &p) { return std::ifstream(p).good(); }

inline std::string stories_path() { return source_dir() + "/data/models/stories260K.gguf"; }

// The default model; empty when it is not available.
inline std::string smollm2_path() {
    const char *env = std::getenv("FQ_SMOLLM2_GGUF");
    if (env && *env && file_exists(env)) return env;
    std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
    std::string cached = home + "/.cache/flatquant/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    return file_exists(cached) ? cached : std::string();
}

inline bool skip_slow() {
    const char *env = std::getenv("FQ_SKIP_SLOW");
    return env && *env && std::string(env) != "0";
}

inline std::string read_file(const std::string &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace fq::test

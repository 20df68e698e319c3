// libFuzzer target for the GGUF reader: any input must either open or fail with fq::Error, and every tensor of a
// file that opens must read back without fault. Built and run by tools/fuzz_gguf.sh (or FQ_FUZZ=ON in CMake).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::unique_ptr<fq::gguf::File> f;
    try {
        f = fq::gguf::File::open_memory(data, size, "fuzz");
    } catch (const fq::Error &) {
        return 0;
    }
    // Getters over every key with every array kind: wrong types must throw, never misbehave.
    for (const fq::gguf::KeyValue &kv : f->metadata()) {
        try { f->get_string_array(kv.key); } catch (const fq::Error &) {}
        try { f->get_float_array(kv.key); } catch (const fq::Error &) {}
        try { f->get_int32_array(kv.key); } catch (const fq::Error &) {}
        try { f->get_int(kv.key, 0); } catch (const fq::Error &) {}
        try { f->get_float(kv.key, 0); } catch (const fq::Error &) {}
    }
    std::vector<float> out;
    for (const fq::gguf::TensorInfo &t : f->tensors()) {
        (void)fq::gguf::tensor_type_name(t.type);
        if (!fq::gguf::can_dequantize(t.type)) {
            try {
                f->read_f32(t, out.data());
                __builtin_trap();  // must have thrown UNSUPPORTED
            } catch (const fq::Error &) {
            }
            continue;
        }
        // A decodable tensor lies inside the input, so its element count is bounded by the input size.
        if (t.n_elements > 8 * uint64_t(size) + 8) __builtin_trap();
        out.resize(t.n_elements);
        f->read_f32(t, out.data());
        if (t.n_elements > 0) {
            // Touch the first and last stored bytes through the public pointer, as a GPU upload would.
            const uint8_t *p = f->tensor_data(t);
            volatile uint8_t sink = p[0] ^ p[t.n_bytes - 1];
            (void)sink;
        }
    }
    return 0;
}

/**
 * FlatQuant for the JVM: load LLaMA-family GGUF models, tokenize, compute logits and perplexity, generate text,
 * calibrate FlatQuant quantization ({@link org.flatquant.Calibrator}) and run fake-quantized models
 * ({@link org.flatquant.Model#quantize}), on the CPU or a CUDA GPU, through a native library reached with the
 * Foreign Function &amp; Memory API.
 *
 * <p>Java 22 is the minimum (the FFM API became final there). The library calls restricted FFM methods, so
 * grant native access: {@code --enable-native-access=org.flatquant} on the module path,
 * {@code --enable-native-access=ALL-UNNAMED} on the class path (an executable jar's manifest may say
 * {@code Enable-Native-Access: ALL-UNNAMED} instead).
 *
 * <p>The native library is loaded from {@code -Dflatquant.library.path}, else from the resource
 * ({@code org/flatquant/native/<os>-<arch>/} of the native jar, on the class path or the module path), else from
 * {@code java.library.path}; see {@link org.flatquant.NativeLibrary}.
 *
 * <p>Only {@code org.flatquant} is API. {@code org.flatquant.bindings} (generated from {@code flatquant.h}) and
 * {@code org.flatquant.cli} are internal and not exported.
 */
module org.flatquant {
    requires jdk.httpserver; // org.flatquant.serve: the OpenAI-compatible service of `flatquant serve`

    exports org.flatquant;
}

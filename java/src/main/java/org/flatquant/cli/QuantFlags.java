package org.flatquant.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import org.flatquant.CancellationToken;
import org.flatquant.Engine;
import org.flatquant.InvalidArgumentException;
import org.flatquant.Model;
import org.flatquant.ModelInfo;
import org.flatquant.ProgressListener;
import org.flatquant.QuantMethod;
import org.flatquant.QuantScheme;
import org.flatquant.QuantizeOptions;
import org.flatquant.cli.Args.UsageException;

/**
 * Which model a command runs: {@code --model M.gguf} with {@code --quant Q --method M [--artifact A]} and the
 * rotation seed, or {@code --quantized Q.gguf}. With {@code --model} alone the model runs in full precision; with any
 * of the others it is quantized with {@link Model#quantize} before use. {@code --method flatquant} needs
 * {@code --artifact}; with {@code --artifact}, {@code --quant} and {@code --method} default to the artifact's (and
 * must match it when given); without it they default to w4a4kv4 and rtn. A quantized-model file
 * ({@code --quantized}, written by {@code flatquant quantize}) is loaded as it is: it is already quantized, so it
 * takes none of the other options.
 */
final class QuantFlags {
    /** The eval/session engine name of the real W4A4 kernels (fq_model_info.eval_engine). */
    static final String ENGINE_W4A4 = "cuda-w4a4";

    /** The full-precision model (--model), or null with --quantized. */
    private final Path model;
    /** The quantized-model file (--quantized), or null. */
    private final Path quantized;
    private final QuantScheme quant;
    private final QuantMethod method;
    private final Path artifact;
    private final long seed;

    private QuantFlags(Path model, Path quantized, QuantScheme quant, QuantMethod method, Path artifact, long seed) {
        this.model = model;
        this.quantized = quantized;
        this.quant = quant;
        this.method = method;
        this.artifact = artifact;
        this.seed = seed;
    }

    /** The options that take a value: --model, --quantized, the QUANT flags and {@code seedOption}. */
    static Set<String> options(String seedOption) {
        Set<String> s = new HashSet<>(Set.of("--model", "--quantized", "--quant", "--method", "--artifact"));
        s.add(seedOption);
        return s;
    }

    /**
     * Reads the flags; a malformed --quant or --method, or flatquant without an artifact, is a usage error.
     *
     * @param seedOption the option holding the rotations' seed ({@code --seed}, or {@code --quant-seed} where
     *     {@code --seed} already means the sampler's)
     */
    static QuantFlags parse(Args a, String seedOption) {
        if (a.has("--quantized")) {
            if (a.has("--model")) {
                throw new UsageException("--quantized Q.gguf is the model to run; it cannot be combined with --model "
                        + "(a quantized-model file needs no full-precision model)");
            }
            for (String o : new String[] {"--artifact", "--quant", "--method", seedOption}) {
                if (a.has(o)) {
                    throw new UsageException("--quantized Q.gguf is already quantized; " + o + " cannot be combined "
                            + "with it (make another file with: flatquant quantize --model M.gguf ... --out Q.gguf)");
                }
            }
            return new QuantFlags(null, Path.of(a.required("--quantized")), null, null, null, 0);
        }
        if (!a.has("--model")) {
            throw new UsageException(a.command() + " needs --model M.gguf or --quantized Q.gguf");
        }
        Path model = Path.of(a.required("--model"));
        QuantScheme quant = null;
        QuantMethod method = null;
        try {
            if (a.has("--quant")) {
                quant = QuantScheme.parse(a.required("--quant"));
            }
            if (a.has("--method")) {
                method = QuantMethod.parse(a.required("--method"));
            }
        } catch (InvalidArgumentException e) {
            throw new UsageException(e.detail());
        }
        Path artifact = a.has("--artifact") ? Path.of(a.required("--artifact")) : null;
        if (artifact == null && method != null && method.needsArtifact()) {
            throw new UsageException("--method flatquant needs --artifact A, a calibration artifact of the model "
                    + "(make one with: flatquant calibrate --model M --out A); rtn and rotate need none");
        }
        long seed = a.longValue(seedOption, 0, Long.MIN_VALUE, Long.MAX_VALUE);
        if (a.has(seedOption) && (method != QuantMethod.ROTATE || artifact != null)) {
            throw new UsageException(seedOption + " seeds the rotations of --method rotate without --artifact "
                    + "(an artifact holds its own); it means nothing here");
        }
        return new QuantFlags(model, null, quant, method, artifact, seed);
    }

    /** Whether the model is quantized before use (by the QUANT flags; a --quantized file already is). */
    boolean quantizes() {
        return quant != null || method != null || artifact != null;
    }

    /** Whether the model is a quantized-model file (--quantized). */
    boolean isQuantizedFile() {
        return quantized != null;
    }

    /** The artifact given, or null. */
    Path artifact() {
        return artifact;
    }

    /** The file that is loaded: --model's, or --quantized's. */
    Path path() {
        return quantized != null ? quantized : model;
    }

    /**
     * The file that is loaded, checked to exist.
     *
     * @throws Main.CliException when it does not
     */
    Path existingPath() {
        Path p = path();
        if (!Files.exists(p)) {
            throw new Main.CliException((quantized != null ? "quantized model file not found: "
                    : "model file not found: ") + p);
        }
        return p;
    }

    /** Loads the model without cancellation. See {@link #load(Engine, ProgressListener, CancellationToken)}. */
    Model load(Engine engine, ProgressListener progress) {
        return load(engine, progress, null);
    }

    /**
     * Loads the model and quantizes it when asked. The full-precision model is closed right after quantizing: the
     * quantized one keeps what it shares alive on its own.
     *
     * @param progress reports of the quantization's stages, or null
     * @param token cancels the quantization, or null
     * @return the model to use; close it
     */
    Model load(Engine engine, ProgressListener progress, CancellationToken token) {
        Path modelPath = existingPath();
        if (artifact != null && !Files.isRegularFile(artifact)) {
            throw new Main.CliException(Files.isDirectory(artifact) ? "the artifact is a directory: " + artifact
                    : "artifact file not found: " + artifact);
        }
        Model base = Model.load(engine, modelPath);
        if (!quantizes()) {
            return base;
        }
        try (base) {
            QuantizeOptions options = artifact != null
                    ? QuantizeOptions.artifact(artifact).withQuant(quant).withMethod(method)
                    : QuantizeOptions.of(quant == null ? QuantScheme.W4A4KV4 : quant,
                            method == null ? QuantMethod.RTN : method).withSeed(seed);
            return base.quantize(token == null ? options : options.withCancellation(token), progress);
        }
    }

    /**
     * Adds "quant", "method", "weight_quantizer" (null for full precision), "artifact" (null without one),
     * "quantized_file" and the engines that run the model, "eval_engine" and "session_engine" (null when none can).
     */
    Json describe(Json json, ModelInfo info) {
        boolean q = info.isQuantized();
        return json.put("quant", q ? info.quant() : null)
                .put("method", q ? info.method() : null)
                .put("weight_quantizer", q ? info.weightQuantizer() : null)
                .put("artifact", artifact == null ? null : artifact.toString())
                .put("quantized_file", info.quantizedFile())
                .put("eval_engine", info.evalEngine().isEmpty() ? null : info.evalEngine())
                .put("session_engine", info.sessionEngine().isEmpty() ? null : info.sessionEngine());
    }

    /** One human-readable line: the scheme, or "none (full precision)". */
    String describe(ModelInfo info) {
        if (!info.isQuantized()) {
            return "none (full precision)";
        }
        String s = info.quant() + " " + info.method() + ", " + info.weightQuantizer() + " weights";
        if (info.quantizedFile()) {
            s += " (quantized-model file)";
        } else if (artifact != null) {
            s += " (artifact " + artifact + ")";
        } else if (QuantMethod.ROTATE.id().equals(info.method())) {
            s += " (rotation seed " + seed + ")";
        }
        return s + (ENGINE_W4A4.equals(info.evalEngine()) ? ", INT4 kernels" : ", fake-quantized");
    }

    /** One human-readable line: which engines run whole-sequence evaluation and sessions. */
    static String engines(ModelInfo info) {
        return "evaluation " + orNone(info.evalEngine()) + ", sessions " + orNone(info.sessionEngine());
    }

    private static String orNone(String engine) {
        return engine.isEmpty() ? "none" : engine;
    }
}

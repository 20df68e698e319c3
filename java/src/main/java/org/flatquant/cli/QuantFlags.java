package org.flatquant.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
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
 * {@code --quant Q --method M [--artifact A]} and the rotation seed: which model a command runs. Without any of
 * them the model runs in full precision; otherwise it is quantized with {@link Model#quantize} before use.
 * {@code --method flatquant} needs {@code --artifact}; with {@code --artifact}, {@code --quant} and {@code --method}
 * default to the artifact's (and must match it when given); without it they default to w4a4kv4 and rtn.
 */
final class QuantFlags {
    static final String HELP = """
              --quant Q           quantize the model first: w<bits>a<bits>[kv<bits>], e.g. w4a4kv4 (the
                                  default with --method), w4a16, w8a8; each width 2..8 or 16 (off)
              --method M          rtn (the default with --quant), rotate, or flatquant (needs --artifact)
              --artifact A        a calibration artifact of this model (flatquant calibrate); --quant and
                                  --method then default to the artifact's""";

    private final QuantScheme quant;
    private final QuantMethod method;
    private final Path artifact;
    private final long seed;

    private QuantFlags(QuantScheme quant, QuantMethod method, Path artifact, long seed) {
        this.quant = quant;
        this.method = method;
        this.artifact = artifact;
        this.seed = seed;
    }

    /** The options that take a value, plus {@code seedOption} (the rotations' seed). */
    static Set<String> options(String seedOption) {
        Set<String> s = new HashSet<>(Set.of("--quant", "--method", "--artifact"));
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
        return new QuantFlags(quant, method, artifact, seed);
    }

    /** Whether the model is quantized before use. */
    boolean quantizes() {
        return quant != null || method != null || artifact != null;
    }

    /** The artifact given, or null. */
    Path artifact() {
        return artifact;
    }

    /**
     * Loads the model and quantizes it when asked. The full-precision model is closed right after quantizing: the
     * quantized one keeps what it shares alive on its own.
     *
     * @param progress reports of the quantization's stages, or null
     * @return the model to use; close it
     */
    Model load(Engine engine, Path modelPath, ProgressListener progress) {
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
            return base.quantize(options, progress);
        }
    }

    /** Adds "quant", "method", "weight_quantizer" (null for full precision) and "artifact" (null without one). */
    Json describe(Json json, ModelInfo info) {
        boolean q = info.isQuantized();
        return json.put("quant", q ? info.quant() : null)
                .put("method", q ? info.method() : null)
                .put("weight_quantizer", q ? info.weightQuantizer() : null)
                .put("artifact", artifact == null ? null : artifact.toString());
    }

    /** One human-readable line: the scheme, or "none (full precision)". */
    String describe(ModelInfo info) {
        if (!info.isQuantized()) {
            return "none (full precision)";
        }
        String s = info.quant() + " " + info.method() + ", " + info.weightQuantizer() + " weights";
        if (artifact != null) {
            s += " (artifact " + artifact + ")";
        } else if (QuantMethod.ROTATE.id().equals(info.method())) {
            s += " (rotation seed " + seed + ")";
        }
        return s + ", fake-quantized";
    }
}

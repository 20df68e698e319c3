package org.flatquant;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * FlatQuant calibration: learns a full-precision model's transforms, smoothing scales and clipping thresholds layer
 * by layer on a calibration text, and writes them to a calibration artifact that {@link Model#quantize} turns into
 * a fake-quantized model. Methods {@link QuantMethod#RTN rtn} and {@link QuantMethod#ROTATE rotate} learn nothing,
 * but an artifact of them fixes the rotations and, with {@link WeightQuantizer#GPTQ GPTQ}, stores the weight codes.
 *
 * <p>Immutable and thread safe; build one with {@link #builder()}. The defaults are the official FlatQuant LLaMA
 * W4A4KV4 settings: 128 windows of 2048 tokens, batches of 4, 15 epochs, learning rate 5e-3 (10x for the clipping
 * thresholds), smoothing exponent 0.3, learnable smoothing and clipping on.
 *
 * <pre>{@code
 * try (Engine engine = Engine.cpu();
 *      Model model = Model.load(engine, Path.of("model.gguf"))) {
 *     CalibrationResult r = Calibrator.builder().samples(128).seqlen(2048).epochs(15).build()
 *             .calibrate(model, WikiText.validation(Path.of("data")), Path.of("model.w4a4kv4.fq"),
 *                     e -> { System.err.println("layer " + e.layer() + " loss " + e.mse()); return true; });
 *     try (Model quantized = model.quantize(QuantizeOptions.artifact(r.artifact()))) {
 *         System.out.println(quantized.perplexity(WikiText.test(Path.of("data")), null).perplexity());
 *     }
 * }
 * }</pre>
 *
 * @since 0.1
 */
public final class Calibrator {
    /** Calibration windows by default. */
    public static final int DEFAULT_SAMPLES = 128;
    /** Tokens per calibration window by default. */
    public static final int DEFAULT_SEQLEN = 2048;
    /** Windows per optimizer step by default (fewer when there are fewer samples). */
    public static final int DEFAULT_BATCH = 4;
    /** Epochs per layer by default. */
    public static final int DEFAULT_EPOCHS = 15;
    /** The transforms' learning rate by default; the clipping thresholds get ten times this. */
    public static final double DEFAULT_LR = 5e-3;
    /** The smoothing-scale initialization exponent by default. */
    public static final double DEFAULT_DIAG_ALPHA = 0.3;
    /** GPTQ's damping, as a fraction of the mean Hessian diagonal, by default. */
    public static final double DEFAULT_PERCDAMP = 0.01;
    /** GPTQ's column block by default. */
    public static final int DEFAULT_GPTQ_BLOCK_SIZE = 128;

    final QuantScheme quant;
    final QuantMethod method;
    final WeightQuantizer weights;
    final int samples;
    final int seqlen;
    final int batch;
    private final int requestedBatch; // 0: min(DEFAULT_BATCH, samples)
    final int epochs;
    final double lr;
    final double diagAlpha;
    final boolean smoothing;
    final boolean lwc;
    final boolean lac;
    final boolean directInverse;
    final long seed;
    final double percdamp;
    final int gptqBlockSize;
    final Bos bos;
    final CancellationToken cancellation;
    private final Path baseArtifact;
    final boolean quantSet;
    final boolean methodSet;

    private Calibrator(Builder b) {
        this.quant = b.quant;
        this.method = b.method;
        this.quantSet = b.quantSet;
        this.methodSet = b.methodSet;
        this.baseArtifact = b.baseArtifact;
        this.weights = b.weights;
        this.samples = b.samples;
        this.seqlen = b.seqlen;
        this.requestedBatch = b.batch;
        this.batch = b.batch > 0 ? b.batch : Math.min(DEFAULT_BATCH, b.samples);
        this.epochs = b.epochs;
        this.lr = b.lr;
        this.diagAlpha = b.diagAlpha;
        this.smoothing = b.smoothing;
        this.lwc = b.lwc;
        this.lac = b.lac;
        this.directInverse = b.directInverse;
        this.seed = b.seed;
        this.percdamp = b.percdamp;
        this.gptqBlockSize = b.gptqBlockSize;
        this.bos = b.bos;
        this.cancellation = b.cancellation;
        if (batch > samples && baseArtifact == null) {
            throw new InvalidArgumentException("batch " + batch + " exceeds the " + samples + " samples");
        }
        if (baseArtifact != null && weights != WeightQuantizer.GPTQ) {
            throw new InvalidArgumentException("a base artifact keeps its transforms and re-quantizes the weights: "
                    + "it needs weights GPTQ, got " + weights);
        }
    }

    /**
     * A builder holding the defaults.
     *
     * @return a new builder
     */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * A calibrator with every default: W4A4KV4, FlatQuant, RTN weights.
     *
     * @return the calibrator
     */
    public static Calibrator defaults() {
        return builder().build();
    }

    /**
     * A builder holding this calibrator's settings.
     *
     * @return a new builder
     */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.quant = quant;
        b.method = method;
        b.quantSet = quantSet;
        b.methodSet = methodSet;
        b.baseArtifact = baseArtifact;
        b.weights = weights;
        b.samples = samples;
        b.seqlen = seqlen;
        b.batch = requestedBatch;
        b.epochs = epochs;
        b.lr = lr;
        b.diagAlpha = diagAlpha;
        b.smoothing = smoothing;
        b.lwc = lwc;
        b.lac = lac;
        b.directInverse = directInverse;
        b.seed = seed;
        b.percdamp = percdamp;
        b.gptqBlockSize = gptqBlockSize;
        b.bos = bos;
        b.cancellation = cancellation;
        return b;
    }

    /**
     * The bit widths.
     *
     * @return the scheme calibrated for; with a {@link #baseArtifact()}, what was set explicitly (to be checked
     *     against the artifact), else null
     */
    public QuantScheme quant() {
        return baseArtifact != null && !quantSet ? null : quant;
    }

    /**
     * The method.
     *
     * @return the transform method; with a {@link #baseArtifact()}, what was set explicitly, else null
     */
    public QuantMethod method() {
        return baseArtifact != null && !methodSet ? null : method;
    }

    /**
     * The artifact whose transforms are kept while GPTQ re-quantizes the weights.
     *
     * @return the artifact, or null for a calibration from scratch
     */
    public Path baseArtifact() {
        return baseArtifact;
    }

    /**
     * The weight quantizer.
     *
     * @return RTN or GPTQ
     */
    public WeightQuantizer weights() {
        return weights;
    }

    /**
     * Calibration windows.
     *
     * @return the number of windows
     */
    public int samples() {
        return samples;
    }

    /**
     * Tokens per window.
     *
     * @return the window length
     */
    public int seqlen() {
        return seqlen;
    }

    /**
     * Windows per optimizer step.
     *
     * @return the batch, at most {@link #samples()}
     */
    public int batch() {
        return batch;
    }

    /**
     * Epochs per layer.
     *
     * @return the epoch count
     */
    public int epochs() {
        return epochs;
    }

    /**
     * The transforms' and smoothing scales' learning rate (clipping gets ten times this).
     *
     * @return the learning rate
     */
    public double lr() {
        return lr;
    }

    /**
     * The seed of the window offsets, the initialization and the rotations.
     *
     * @return the seed
     */
    public long seed() {
        return seed;
    }

    /**
     * Whether {@code method} and {@code weights} need a calibration text.
     *
     * @return true for FlatQuant or GPTQ weights
     */
    public boolean needsText() {
        return weights == WeightQuantizer.GPTQ || baseArtifact == null && method == QuantMethod.FLATQUANT;
    }

    /**
     * Calibrates without a listener. See {@link #calibrate(Model, String, Path, CalibrationListener)}.
     *
     * @param model a full-precision model
     * @param text the calibration text
     * @param artifact where to write the artifact
     * @return what was done
     */
    public CalibrationResult calibrate(Model model, String text, Path artifact) {
        return calibrate(model, text, artifact, null);
    }

    /**
     * Calibrates {@code model} on {@code text} and writes the artifact. The text is tokenized once (with the
     * model's BOS default, or as {@link Builder#bos} says) and {@link #samples()} windows of {@link #seqlen()}
     * tokens are drawn from it at offsets given by the seed. Runs on the engine's CUDA device when it has one,
     * otherwise on its CPU threads; for a seed and a thread count the result is deterministic.
     *
     * <p>The write is atomic: on any failure or cancellation the file at {@code artifact} is left as it was and no
     * temporary file remains.
     *
     * <p>With a {@link Builder#baseArtifact base artifact} nothing is learned: its transforms are kept, GPTQ
     * quantizes the weights on the windows the artifact was calibrated on (so {@code text} must be that text; the
     * windows' hash is checked), and the result goes to {@code artifact}.
     *
     * @param model a full-precision model (not one made by {@link Model#quantize})
     * @param text the calibration text (UTF-8 when passed on); may be empty only when {@link #needsText()} is false
     * @param artifact the file to write; its directory must exist
     * @param listener epoch events and stage progress on the calling thread; may return false to cancel; may be
     *     null
     * @return what was done
     * @throws InvalidArgumentException for a quantized model, a window longer than the model's context, a text too
     *     short for the windows, a missing text, a base artifact of another model or text, or a scheme that
     *     contradicts the base artifact
     * @throws NotFoundException when the artifact's directory does not exist
     * @throws NativeIoException when the artifact cannot be written
     * @throws CancelledException when the listener or the cancellation token cancelled
     * @throws NumericException when the loss became non-finite
     */
    public CalibrationResult calibrate(Model model, String text, Path artifact, CalibrationListener listener) {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(text, "text");
        Objects.requireNonNull(artifact, "artifact");
        ModelInfo info = model.info();
        if (info.isQuantized()) {
            throw new InvalidArgumentException("calibration needs the full-precision model, but this model is already "
                    + "quantized (" + info.quant() + " " + info.method() + ")");
        }
        QuantScheme scheme = quant;
        QuantMethod schemeMethod = method;
        Path base = baseArtifact == null ? null : baseArtifact.toAbsolutePath();
        if (base != null) {
            // The scheme is the base artifact's (the native side checks any explicit names against it).
            java.util.Map<String, String> meta = ArtifactHeader.metadata(base);
            scheme = QuantScheme.parse(meta.getOrDefault("bits", ""));
            schemeMethod = QuantMethod.parse(meta.getOrDefault("method", ""));
        }
        if (needsText()) {
            if (text.isEmpty()) {
                throw new InvalidArgumentException("the calibration text is empty (method " + schemeMethod + " with "
                        + weights + " weights needs calibration windows)");
            }
            if (base == null && seqlen > info.contextLength()) {
                throw new InvalidArgumentException("calibration seqlen " + seqlen
                        + " exceeds the model's context length " + info.contextLength());
            }
        }
        Path out = artifact.toAbsolutePath();
        if (Files.isDirectory(out)) {
            throw new InvalidArgumentException("the artifact path names a directory: " + artifact);
        }
        return CalibrationCall.run(this, model, text, out, base, scheme, schemeMethod, listener);
    }

    @Override
    public String toString() {
        String scheme = baseArtifact == null ? quant + " " + method : "base " + baseArtifact;
        return "Calibrator[" + scheme + ", " + weights + " weights, " + samples + "x" + seqlen + " tokens, batch "
                + batch + ", " + epochs + " epochs, lr " + lr + ", seed " + seed + "]";
    }

    /**
     * Collects the settings of a {@link Calibrator}; every setter validates its value. Not thread safe.
     *
     * @since 0.1
     */
    public static final class Builder {
        private QuantScheme quant = QuantScheme.W4A4KV4;
        private QuantMethod method = QuantMethod.FLATQUANT;
        private WeightQuantizer weights = WeightQuantizer.RTN;
        private int samples = DEFAULT_SAMPLES;
        private int seqlen = DEFAULT_SEQLEN;
        private int batch; // 0: min(DEFAULT_BATCH, samples)
        private int epochs = DEFAULT_EPOCHS;
        private double lr = DEFAULT_LR;
        private double diagAlpha = DEFAULT_DIAG_ALPHA;
        private boolean smoothing = true;
        private boolean lwc = true;
        private boolean lac = true;
        private boolean directInverse;
        private long seed;
        private double percdamp = DEFAULT_PERCDAMP;
        private int gptqBlockSize = DEFAULT_GPTQ_BLOCK_SIZE;
        private Bos bos = Bos.DEFAULT;
        private CancellationToken cancellation;
        private Path baseArtifact;
        private boolean quantSet;
        private boolean methodSet;

        private Builder() {
        }

        /**
         * The bit widths; default W4A4KV4.
         *
         * @param value the scheme
         * @return this builder
         */
        public Builder quant(QuantScheme value) {
            this.quant = Objects.requireNonNull(value, "quant");
            this.quantSet = true;
            return this;
        }

        /**
         * The bit widths by name; see {@link QuantScheme#parse}.
         *
         * @param value for example {@code "w4a4kv4"}
         * @return this builder
         * @throws InvalidArgumentException for a malformed name
         */
        public Builder quant(String value) {
            return quant(QuantScheme.parse(value));
        }

        /**
         * The method; default FlatQuant.
         *
         * @param value the method
         * @return this builder
         */
        public Builder method(QuantMethod value) {
            this.method = Objects.requireNonNull(value, "method");
            this.methodSet = true;
            return this;
        }

        /**
         * The weight quantizer; default RTN. GPTQ needs the calibration text even for rtn and rotate.
         *
         * @param value the quantizer
         * @return this builder
         */
        public Builder weights(WeightQuantizer value) {
            this.weights = Objects.requireNonNull(value, "weights");
            return this;
        }

        /**
         * Calibration windows; default 128.
         *
         * @param value at least 1
         * @return this builder
         */
        public Builder samples(int value) {
            this.samples = atLeast("samples", value, 1);
            return this;
        }

        /**
         * Tokens per calibration window; default 2048, at most the model's context length.
         *
         * @param value at least 2
         * @return this builder
         */
        public Builder seqlen(int value) {
            this.seqlen = atLeast("seqlen", value, 2);
            return this;
        }

        /**
         * Windows per optimizer step; default 4, or the sample count when that is smaller.
         *
         * @param value 1 to the sample count
         * @return this builder
         */
        public Builder batch(int value) {
            this.batch = atLeast("batch", value, 1);
            return this;
        }

        /**
         * Epochs per layer; default 15. 0 keeps the initialization (smoothing scales from the statistics).
         *
         * @param value at least 0
         * @return this builder
         */
        public Builder epochs(int value) {
            this.epochs = atLeast("epochs", value, 0);
            return this;
        }

        /**
         * The learning rate of the transforms and smoothing scales (the clipping thresholds get ten times it);
         * default 5e-3. AdamW with a cosine schedule down to a thousandth of it.
         *
         * @param value finite, at least 0
         * @return this builder
         */
        public Builder lr(double value) {
            if (!(Double.isFinite(value) && value >= 0)) {
                throw new InvalidArgumentException("lr must be finite and at least 0, got " + value);
            }
            this.lr = value;
            return this;
        }

        /**
         * The exponent of the SmoothQuant-style initialization of the smoothing scales; default 0.3.
         *
         * @param value in [0, 1]
         * @return this builder
         */
        public Builder diagAlpha(double value) {
            if (!(value >= 0 && value <= 1)) {
                throw new InvalidArgumentException("diagAlpha must be in [0, 1], got " + value);
            }
            this.diagAlpha = value;
            return this;
        }

        /**
         * Whether the smoothing scales are learned; default on.
         *
         * @param value on or off
         * @return this builder
         */
        public Builder smoothing(boolean value) {
            this.smoothing = value;
            return this;
        }

        /**
         * Whether the weight clipping thresholds are learned (LWC); default on.
         *
         * @param value on or off
         * @return this builder
         */
        public Builder lwc(boolean value) {
            this.lwc = value;
            return this;
        }

        /**
         * Whether the activation and K/V clipping thresholds are learned (LAC); default on.
         *
         * @param value on or off
         * @return this builder
         */
        public Builder lac(boolean value) {
            this.lac = value;
            return this;
        }

        /**
         * Whether the transforms are plain matrices with a computed inverse instead of the SVD form; default off.
         *
         * @param value on or off
         * @return this builder
         */
        public Builder directInverse(boolean value) {
            this.directInverse = value;
            return this;
        }

        /**
         * The seed of the window offsets, the transforms' initialization and rotate's rotations; default 0.
         *
         * @param value any value
         * @return this builder
         */
        public Builder seed(long value) {
            this.seed = value;
            return this;
        }

        /**
         * GPTQ's damping as a fraction of the mean Hessian diagonal; default 0.01.
         *
         * @param value in (0, 10)
         * @return this builder
         */
        public Builder percdamp(double value) {
            if (!(value > 0 && value < 10)) {
                throw new InvalidArgumentException("percdamp must be in (0, 10), got " + value);
            }
            this.percdamp = value;
            return this;
        }

        /**
         * GPTQ's column block; default 128.
         *
         * @param value 1 to 4096
         * @return this builder
         */
        public Builder gptqBlockSize(int value) {
            if (value < 1 || value > 4096) {
                throw new InvalidArgumentException("gptqBlockSize must be between 1 and 4096, got " + value);
            }
            this.gptqBlockSize = value;
            return this;
        }

        /**
         * Whether a BOS token goes before the calibration text; default the model's choice.
         *
         * @param value the BOS choice
         * @return this builder
         */
        public Builder bos(Bos value) {
            this.bos = Objects.requireNonNull(value, "bos");
            return this;
        }

        /**
         * A token that cancels the calibration from another thread; default none.
         *
         * @param token the token, or null
         * @return this builder
         */
        public Builder cancellation(CancellationToken token) {
            this.cancellation = token;
            return this;
        }

        /**
         * Calibrates on top of an existing artifact of the model: its transforms, smoothing and clipping are kept,
         * and GPTQ (which {@link #weights} must then be) quantizes the weights on the artifact's own calibration
         * windows, whose sample count, length and seed are taken from it. The bit widths and the method are the
         * artifact's; set explicitly, they must match it. Default none.
         *
         * @param artifact an artifact of the model, or null to calibrate from scratch
         * @return this builder
         */
        public Builder baseArtifact(Path artifact) {
            this.baseArtifact = artifact;
            return this;
        }

        /**
         * The calibrator.
         *
         * @return an immutable calibrator
         * @throws InvalidArgumentException when the batch exceeds the sample count, or a base artifact is given
         *     without GPTQ weights
         */
        public Calibrator build() {
            return new Calibrator(this);
        }

        private static int atLeast(String name, int value, int min) {
            if (value < min) {
                throw new InvalidArgumentException(name + " must be at least " + min + ", got " + value);
            }
            return value;
        }
    }
}

package org.flatquant;

import java.nio.file.Path;

/**
 * What {@link Model#quantize} makes. Immutable; start from {@link #artifact(Path)} (a calibrated model) or
 * {@link #of(QuantScheme, QuantMethod)} (rtn or rotate, no calibration) and adjust with the {@code with*} methods.
 *
 * @param artifact a calibration artifact of the model (from {@link Calibrator}), or null; method
 *     {@link QuantMethod#FLATQUANT} needs one
 * @param quant the bit widths, or null for the artifact's (W4A4KV4 without one); with an artifact it must match
 *     the artifact's
 * @param method the method, or null for the artifact's ({@link QuantMethod#RTN} without one); with an artifact it
 *     must match the artifact's
 * @param seed the seed of the rotations of {@link QuantMethod#ROTATE} without an artifact; ignored otherwise
 * @param cancellation a token that cancels quantizing from another thread, or null
 * @since 0.1
 */
public record QuantizeOptions(Path artifact, QuantScheme quant, QuantMethod method, long seed,
                              CancellationToken cancellation) {

    /**
     * The fake-quantized model an artifact describes, with its bit widths and method.
     *
     * @param artifact a calibration artifact of the model
     * @return the options
     */
    public static QuantizeOptions artifact(Path artifact) {
        if (artifact == null) {
            throw new InvalidArgumentException("artifact must not be null");
        }
        return new QuantizeOptions(artifact, null, null, 0, null);
    }

    /**
     * A model quantized without calibration: {@link QuantMethod#RTN} or {@link QuantMethod#ROTATE} (whose
     * rotations come from {@link #withSeed seed} 0 unless changed).
     *
     * @param quant the bit widths
     * @param method rtn or rotate; flatquant needs {@link #withArtifact an artifact}
     * @return the options
     */
    public static QuantizeOptions of(QuantScheme quant, QuantMethod method) {
        if (quant == null || method == null) {
            throw new InvalidArgumentException("quant and method must not be null");
        }
        return new QuantizeOptions(null, quant, method, 0, null);
    }

    /**
     * A copy with another artifact.
     *
     * @param file the artifact, or null for none
     * @return the new options
     */
    public QuantizeOptions withArtifact(Path file) {
        return new QuantizeOptions(file, quant, method, seed, cancellation);
    }

    /**
     * A copy with other bit widths.
     *
     * @param value the widths, or null for the artifact's
     * @return the new options
     */
    public QuantizeOptions withQuant(QuantScheme value) {
        return new QuantizeOptions(artifact, value, method, seed, cancellation);
    }

    /**
     * A copy with another method.
     *
     * @param value the method, or null for the artifact's
     * @return the new options
     */
    public QuantizeOptions withMethod(QuantMethod value) {
        return new QuantizeOptions(artifact, quant, value, seed, cancellation);
    }

    /**
     * A copy with another rotation seed.
     *
     * @param value the seed
     * @return the new options
     */
    public QuantizeOptions withSeed(long value) {
        return new QuantizeOptions(artifact, quant, method, value, cancellation);
    }

    /**
     * A copy with a cancellation token.
     *
     * @param token the token, or null for none
     * @return the new options
     */
    public QuantizeOptions withCancellation(CancellationToken token) {
        return new QuantizeOptions(artifact, quant, method, seed, token);
    }
}

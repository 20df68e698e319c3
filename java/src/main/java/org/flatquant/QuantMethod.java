package org.flatquant;

import java.util.Locale;

/**
 * How a model is transformed before quantization.
 *
 * @since 0.1
 */
public enum QuantMethod {
    /** No transform: round-to-nearest quantization of the original weights and activations. */
    RTN("rtn"),
    /** Fixed random orthogonal Kronecker rotations (QuaRot-like), drawn from a seed; no calibration data. */
    ROTATE("rotate"),
    /**
     * FlatQuant: learned Kronecker transforms, smoothing scales and clipping thresholds, calibrated layer by layer
     * with {@link Calibrator}; a quantized model needs the calibration artifact.
     */
    FLATQUANT("flatquant");

    private final String id;

    QuantMethod(String id) {
        this.id = id;
    }

    /**
     * The name the native library, the artifact and the command line use.
     *
     * @return {@code "rtn"}, {@code "rotate"} or {@code "flatquant"}
     */
    public String id() {
        return id;
    }

    /**
     * Whether {@link Model#quantize} needs a calibration artifact for this method.
     *
     * @return true for {@link #FLATQUANT}
     */
    public boolean needsArtifact() {
        return this == FLATQUANT;
    }

    /**
     * The method with this name, ignoring case.
     *
     * @param name {@code "rtn"}, {@code "rotate"} or {@code "flatquant"}
     * @return the method
     * @throws InvalidArgumentException for any other name
     */
    public static QuantMethod parse(String name) {
        String n = name == null ? "" : name.strip().toLowerCase(Locale.ROOT);
        for (QuantMethod m : values()) {
            if (m.id.equals(n)) {
                return m;
            }
        }
        throw new InvalidArgumentException("unknown method '" + name + "' (expected rtn, rotate or flatquant)");
    }

    @Override
    public String toString() {
        return id;
    }
}

package org.flatquant;

import java.util.Locale;

/**
 * How the (transformed) weights are rounded to their bit width.
 *
 * @since 0.1
 */
public enum WeightQuantizer {
    /** Round to nearest, per output channel. */
    RTN("rtn"),
    /** GPTQ: column by column with error feedback through the inverse Hessian of calibration inputs. */
    GPTQ("gptq");

    private final String id;

    WeightQuantizer(String id) {
        this.id = id;
    }

    /**
     * The name the native library, the artifact and the command line use.
     *
     * @return {@code "rtn"} or {@code "gptq"}
     */
    public String id() {
        return id;
    }

    /**
     * The quantizer with this name, ignoring case.
     *
     * @param name {@code "rtn"} or {@code "gptq"}
     * @return the quantizer
     * @throws InvalidArgumentException for any other name
     */
    public static WeightQuantizer parse(String name) {
        String n = name == null ? "" : name.strip().toLowerCase(Locale.ROOT);
        for (WeightQuantizer w : values()) {
            if (w.id.equals(n)) {
                return w;
            }
        }
        throw new InvalidArgumentException("unknown weight quantizer '" + name + "' (expected rtn or gptq)");
    }

    @Override
    public String toString() {
        return id;
    }
}

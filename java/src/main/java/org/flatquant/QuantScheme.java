package org.flatquant;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The bit widths of a quantized model: weights, linear-layer inputs (activations) and the K/V cache. A width of 16
 * turns that quantizer off. Written {@code w<W>a<A>[kv<KV>]}, e.g. {@code "w4a4kv4"} (the FlatQuant paper's main
 * setting), {@code "w4a16"} (weights only), {@code "w4a8kv8"} or {@code "w8a8"}; a left-out {@code kv} means 16.
 *
 * <p>Weights are quantized symmetrically per output channel, activations symmetrically per token, and K and V
 * asymmetrically per token and head; queries are never quantized.
 *
 * @param weightBits the weight width, 2 to 8, or 16 for none
 * @param activationBits the width of the inputs of every linear layer, 2 to 8, or 16 for none
 * @param kvBits the K/V cache width, 2 to 8, or 16 for none
 * @since 0.1
 */
public record QuantScheme(int weightBits, int activationBits, int kvBits) {

    /** Four-bit weights, activations and K/V cache: the FlatQuant paper's main setting. */
    public static final QuantScheme W4A4KV4 = new QuantScheme(4, 4, 4);

    private static final Pattern SYNTAX = Pattern.compile("w(\\d{1,3})a(\\d{1,3})(?:kv(\\d{1,3}))?");

    /**
     * Validates the widths.
     *
     * @throws InvalidArgumentException when a width is neither 2 to 8 nor 16
     */
    public QuantScheme {
        check("weight", weightBits);
        check("activation", activationBits);
        check("K/V", kvBits);
    }

    private static void check(String what, int bits) {
        if (!((bits >= 2 && bits <= 8) || bits == 16)) {
            throw new InvalidArgumentException("the " + what + " width must be 2 to 8 bits, or 16 (not quantized), got "
                    + bits);
        }
    }

    /**
     * Parses {@code w<W>a<A>[kv<KV>]}, ignoring case.
     *
     * @param text for example {@code "w4a4kv4"} or {@code "W4A16"}
     * @return the scheme
     * @throws InvalidArgumentException when the text does not have that form or a width is out of range
     */
    public static QuantScheme parse(String text) {
        if (text == null) {
            throw new InvalidArgumentException("no quantization given (expected w<bits>a<bits>[kv<bits>], e.g. "
                    + "w4a4kv4)");
        }
        Matcher m = SYNTAX.matcher(text.strip().toLowerCase(Locale.ROOT));
        if (!m.matches()) {
            throw new InvalidArgumentException("bad quantization '" + text + "': expected w<bits>a<bits>[kv<bits>], "
                    + "e.g. w4a4kv4, w4a16 or w8a8, each width 2 to 8 or 16 (off)");
        }
        try {
            return new QuantScheme(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
                    m.group(3) == null ? 16 : Integer.parseInt(m.group(3)));
        } catch (InvalidArgumentException e) {
            throw new InvalidArgumentException("bad quantization '" + text + "': " + e.detail());
        }
    }

    /**
     * The canonical name, as the native library and the calibration artifact write it.
     *
     * @return for example {@code "w4a4kv4"}, or {@code "w4a16"} when the K/V cache is not quantized
     */
    @Override
    public String toString() {
        return "w" + weightBits + "a" + activationBits + (kvBits == 16 ? "" : "kv" + kvBits);
    }
}

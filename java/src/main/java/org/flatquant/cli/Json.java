package org.flatquant.cli;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Writes one flat JSON object (numbers, strings, booleans, arrays of numbers); enough for the CLI's machine-readable
 * output, no dependency needed.
 */
final class Json {
    private final Map<String, String> fields = new LinkedHashMap<>();

    Json put(String key, String value) {
        fields.put(key, value == null ? "null" : quote(value));
        return this;
    }

    Json put(String key, long value) {
        fields.put(key, Long.toString(value));
        return this;
    }

    Json put(String key, double value) {
        // JSON has no NaN or Infinity; null says "no number" without breaking parsers.
        fields.put(key, Double.isFinite(value) ? Double.toString(value) : "null");
        return this;
    }

    Json put(String key, float value) {
        // Float.toString is the shortest text that reads back as the same float (1.0E-5, not 9.99999974E-6).
        fields.put(key, Float.isFinite(value) ? Float.toString(value) : "null");
        return this;
    }

    /** An integer, or null for "none". */
    Json putInteger(String key, Long value) {
        fields.put(key, value == null ? "null" : value.toString());
        return this;
    }

    /** An array of numbers; non-finite ones become null, as in {@link #put(String, double)}. */
    Json putNumbers(String key, double[] values) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = 0; i < values.length; i++) {
            sb.append(i == 0 ? "" : ", ").append(Double.isFinite(values[i]) ? Double.toString(values[i]) : "null");
        }
        fields.put(key, sb.append(']').toString());
        return this;
    }

    Json put(String key, boolean value) {
        fields.put(key, Boolean.toString(value));
        return this;
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("{");
        for (Map.Entry<String, String> e : fields.entrySet()) {
            if (sb.length() > 1) {
                sb.append(", ");
            }
            sb.append(quote(e.getKey())).append(": ").append(e.getValue());
        }
        return sb.append('}').toString();
    }

    static String quote(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }
}

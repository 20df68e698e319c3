package org.flatquant;

import org.flatquant.bindings.flatquant_h;

/** The status codes of flatquant.h, and their names without asking the native library (it may not be loaded). */
final class Status {
    static final int OK = 0;
    static final int INVALID_ARGUMENT = 1;
    static final int NOT_FOUND = 2;
    static final int IO = 3;
    static final int MODEL_FORMAT = 4;
    static final int UNSUPPORTED = 5;
    static final int OUT_OF_MEMORY = 6;
    static final int DEVICE_OUT_OF_MEMORY = 7;
    static final int DEVICE_UNAVAILABLE = 8;
    static final int CUDA = 9;
    static final int CANCELLED = 10;
    static final int BUSY = 11;
    static final int BUFFER_TOO_SMALL = 12;
    static final int NUMERIC = 13;
    static final int INTERNAL = 14;

    /** Not a native status: the library could not be loaded or is the wrong version. */
    static final int NATIVE_LIBRARY = -1;

    private static final String[] NAMES = {
        "FQ_STATUS_OK", "FQ_STATUS_INVALID_ARGUMENT", "FQ_STATUS_NOT_FOUND", "FQ_STATUS_IO",
        "FQ_STATUS_MODEL_FORMAT", "FQ_STATUS_UNSUPPORTED", "FQ_STATUS_OUT_OF_MEMORY",
        "FQ_STATUS_DEVICE_OUT_OF_MEMORY", "FQ_STATUS_DEVICE_UNAVAILABLE", "FQ_STATUS_CUDA", "FQ_STATUS_CANCELLED",
        "FQ_STATUS_BUSY", "FQ_STATUS_BUFFER_TOO_SMALL", "FQ_STATUS_NUMERIC", "FQ_STATUS_INTERNAL",
    };

    static {
        // The switch in FlatQuantException.of needs compile-time constants; this ties them to the bindings.
        int[] fromHeader = {
            flatquant_h.FQ_STATUS_OK(), flatquant_h.FQ_STATUS_INVALID_ARGUMENT(), flatquant_h.FQ_STATUS_NOT_FOUND(),
            flatquant_h.FQ_STATUS_IO(), flatquant_h.FQ_STATUS_MODEL_FORMAT(), flatquant_h.FQ_STATUS_UNSUPPORTED(),
            flatquant_h.FQ_STATUS_OUT_OF_MEMORY(), flatquant_h.FQ_STATUS_DEVICE_OUT_OF_MEMORY(),
            flatquant_h.FQ_STATUS_DEVICE_UNAVAILABLE(), flatquant_h.FQ_STATUS_CUDA(),
            flatquant_h.FQ_STATUS_CANCELLED(), flatquant_h.FQ_STATUS_BUSY(),
            flatquant_h.FQ_STATUS_BUFFER_TOO_SMALL(), flatquant_h.FQ_STATUS_NUMERIC(),
            flatquant_h.FQ_STATUS_INTERNAL(),
        };
        for (int i = 0; i < fromHeader.length; i++) {
            if (fromHeader[i] != i) {
                throw new AssertionError(NAMES[i] + " is " + fromHeader[i] + " in flatquant.h, " + i + " here");
            }
        }
    }

    private Status() {
    }

    static String name(int status) {
        if (status == NATIVE_LIBRARY) {
            return "NATIVE_LIBRARY";
        }
        return status >= 0 && status < NAMES.length ? NAMES[status] : "FQ_STATUS_UNKNOWN";
    }

    static int count() {
        return NAMES.length;
    }
}

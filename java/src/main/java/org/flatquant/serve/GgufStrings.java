package org.flatquant.serve;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Reads one string value, such as {@code tokenizer.chat_template}, from the key/value header of a GGUF file.
 *
 * <p>The native library does not expose the chat template, and the service needs nothing else from the header,
 * so this walks the metadata itself: magic, version 2 or 3, tensor count, key count, then each
 * {@code key, type, value} (little-endian; strings are a uint64 byte length and UTF-8 bytes; arrays are an element
 * type, a uint64 count and the elements). It stops at the wanted key and never reads tensor data. Every length is
 * checked before use, so a corrupt file gives an {@link IOException}, never a huge allocation.
 */
final class GgufStrings {
    private static final int MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
    private static final long MAX_STRING_BYTES = 16L << 20;
    private static final long MAX_KEYS = 1L << 20;
    private static final int TYPE_STRING = 8;
    private static final int TYPE_ARRAY = 9;
    /** Byte sizes of the scalar value types 0..12 (-1: not a scalar). */
    private static final int[] SCALAR_BYTES = {1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8};

    private final DataInputStream in;

    private GgufStrings(InputStream in) {
        this.in = new DataInputStream(in);
    }

    /**
     * The string value of a key in a GGUF file's metadata.
     *
     * @param file a GGUF file
     * @param key the metadata key, e.g. {@code "tokenizer.chat_template"}
     * @return the value, or empty when the key is absent
     * @throws IOException when the file cannot be read, is not GGUF, or the key holds something else than a string
     */
    static Optional<String> read(Path file, String key) throws IOException {
        try (InputStream raw = new BufferedInputStream(Files.newInputStream(file), 1 << 16)) {
            return new GgufStrings(raw).find(key);
        }
    }

    private Optional<String> find(String wanted) throws IOException {
        if (i32() != MAGIC) {
            throw new IOException("not a GGUF file (bad magic)");
        }
        int version = i32();
        if (version != 2 && version != 3) {
            throw new IOException("unsupported GGUF version " + version);
        }
        i64(); // tensor count: not needed
        long keys = i64();
        if (keys < 0 || keys > MAX_KEYS) {
            throw new IOException("implausible metadata key count " + keys);
        }
        for (long k = 0; k < keys; k++) {
            String key = string();
            int type = i32();
            if (key.equals(wanted)) {
                if (type != TYPE_STRING) {
                    throw new IOException("metadata key " + wanted + " holds type " + type + ", not a string");
                }
                return Optional.of(string());
            }
            skipValue(type, 0);
        }
        return Optional.empty();
    }

    private void skipValue(int type, int depth) throws IOException {
        if (type == TYPE_STRING) {
            skip(stringLength());
        } else if (type == TYPE_ARRAY) {
            if (depth > 4) {
                throw new IOException("arrays nested too deeply");
            }
            int elem = i32();
            long n = i64();
            if (n < 0 || n > (1L << 32)) {
                throw new IOException("implausible array length " + n);
            }
            if (elem >= 0 && elem < SCALAR_BYTES.length && SCALAR_BYTES[elem] > 0) {
                skip(n * SCALAR_BYTES[elem]);
            } else {
                for (long i = 0; i < n; i++) {
                    skipValue(elem, depth + 1);
                }
            }
        } else if (type >= 0 && type < SCALAR_BYTES.length && SCALAR_BYTES[type] > 0) {
            skip(SCALAR_BYTES[type]);
        } else {
            throw new IOException("unknown metadata value type " + type);
        }
    }

    private long stringLength() throws IOException {
        long n = i64();
        if (n < 0 || n > MAX_STRING_BYTES) {
            throw new IOException("implausible string length " + n);
        }
        return n;
    }

    private String string() throws IOException {
        byte[] b = new byte[(int) stringLength()];
        in.readFully(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private void skip(long n) throws IOException {
        while (n > 0) {
            long s = in.skip(n);
            if (s <= 0) {
                if (in.read() < 0) {
                    throw new EOFException("GGUF metadata is truncated");
                }
                s = 1;
            }
            n -= s;
        }
    }

    private int i32() throws IOException {
        return Integer.reverseBytes(in.readInt());
    }

    private long i64() throws IOException {
        return Long.reverseBytes(in.readLong());
    }
}

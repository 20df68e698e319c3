package org.flatquant;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashMap;
import java.util.Map;

/**
 * A small GGUF header reader written for the tests, independent of the native loader: it reads the key/value
 * metadata and the tensor shapes so the tests can check {@link Model#info()} against the file itself.
 */
final class GgufMetadata {
    final int version;
    final Map<String, Object> values = new HashMap<>();
    long parameterCount;

    private final ByteBuffer buf;

    GgufMetadata(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            buf = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size()).order(ByteOrder.LITTLE_ENDIAN);
        }
        if (buf.getInt() != 0x46554747) { // "GGUF" read as a little-endian uint32
            throw new IOException("not a GGUF file: " + file);
        }
        version = buf.getInt();
        long nTensors = buf.getLong();
        long nKv = buf.getLong();
        for (long i = 0; i < nKv; i++) {
            String key = string();
            values.put(key, value(buf.getInt()));
        }
        for (long i = 0; i < nTensors; i++) {
            string();
            int nDims = buf.getInt();
            long elements = 1;
            for (int d = 0; d < nDims; d++) {
                elements *= buf.getLong();
            }
            buf.getInt();  // type
            buf.getLong(); // offset
            parameterCount += elements;
        }
    }

    private String string() {
        byte[] b = new byte[Math.toIntExact(buf.getLong())];
        buf.get(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private Object value(int type) {
        return switch (type) {
            case 0, 1 -> (long) buf.get();
            case 2, 3 -> (long) buf.getShort();
            case 4, 5 -> (long) buf.getInt();
            case 6 -> (double) buf.getFloat();
            case 7 -> buf.get() != 0;
            case 8 -> string();
            case 9 -> {
                int elemType = buf.getInt();
                long n = buf.getLong();
                Object[] items = new Object[Math.toIntExact(n)];
                for (int i = 0; i < n; i++) {
                    items[i] = value(elemType);
                }
                yield items;
            }
            case 10, 11 -> buf.getLong();
            case 12 -> buf.getDouble();
            default -> throw new IllegalStateException("unknown GGUF value type " + type);
        };
    }

    long integer(String key) {
        Object v = values.get(key);
        if (v == null) {
            throw new IllegalStateException("GGUF key missing: " + key);
        }
        return (Long) v;
    }

    String string(String key) {
        return (String) values.get(key);
    }

    int arrayLength(String key) {
        return ((Object[]) values.get(key)).length;
    }
}

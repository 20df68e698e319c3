package org.flatquant;

import static org.flatquant.bindings.flatquant_h.fq_error_init;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import org.flatquant.bindings.fq_error;

/** Small helpers around the bindings: error records, status checks and C strings. */
final class Native {
    private Native() {
    }

    /** A zeroed, initialized error record in {@code arena}; loads the library first. */
    static MemorySegment error(Arena arena) {
        NativeLibrary.load();
        MemorySegment err = fq_error.allocate(arena);
        fq_error_init(err);
        return err;
    }

    /** Throws the exception for {@code status} unless it is OK, with the error record's details. */
    static void check(int status, MemorySegment err) {
        if (status == Status.OK) {
            return;
        }
        throw FlatQuantException.of(status, string(fq_error.message(err)), fq_error.cuda_error(err),
                string(fq_error.cuda_error_name(err)));
    }

    /** The NUL-terminated UTF-8 string at the start of a fixed-size char array (the whole array if no NUL). */
    static String string(MemorySegment chars) {
        long n = 0;
        long size = chars.byteSize();
        while (n < size && chars.get(java.lang.foreign.ValueLayout.JAVA_BYTE, n) != 0) {
            n++;
        }
        return new String(chars.asSlice(0, n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                StandardCharsets.UTF_8);
    }

    /** A static string returned by the library (fq_version_string, fq_status_name). */
    static String staticString(MemorySegment ptr) {
        return ptr.equals(MemorySegment.NULL) ? "" : ptr.reinterpret(Long.MAX_VALUE).getString(0);
    }

    /** The text's UTF-8 bytes in native memory, without NUL (the ABI takes explicit lengths). */
    static MemorySegment utf8(Arena arena, byte[] bytes) {
        MemorySegment seg = arena.allocate(Math.max(1, bytes.length));
        MemorySegment.copy(bytes, 0, seg, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, bytes.length);
        return seg;
    }
}

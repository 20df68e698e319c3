package org.flatquant;

import static org.flatquant.bindings.flatquant_h.fq_model_save_quantized;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/** The downcall of {@link Model#saveQuantized}: the progress upcall, the token and the status. */
final class SaveQuantizedCall {
    private SaveQuantizedCall() {
    }

    /**
     * Runs fq_model_save_quantized; {@code file} is absolute and its directory exists (checked by the caller).
     * The listener and the token may be null.
     */
    static void run(Model model, Path file, ProgressListener listener, CancellationToken cancellation) {
        if (cancellation != null) {
            cancellation.retain();
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            Upcall upcall = Upcall.of(listener);
            MemorySegment progress = upcall == null ? MemorySegment.NULL : upcall.progressStub(call);
            MemorySegment token = cancellation == null ? MemorySegment.NULL : cancellation.handle();
            int status = fq_model_save_quantized(model.handle(), call.allocateFrom(file.toString()), progress,
                    MemorySegment.NULL, token, err);
            if (upcall != null) {
                upcall.rethrow();
            }
            // A false from the listener's last report, after the file was renamed into place, comes too late to
            // cancel: the status is then OK and the save stands.
            Native.check(status, err);
        } finally {
            if (cancellation != null) {
                cancellation.release();
            }
        }
    }
}

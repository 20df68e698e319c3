package org.flatquant;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.flatquant.bindings.fq_calibration_event;
import org.flatquant.bindings.fq_calibration_log_fn;
import org.flatquant.bindings.fq_progress_fn;

/**
 * Bridges the native progress and calibration-log callbacks to Java listeners for the length of one call.
 *
 * <p>An exception escaping an upcall terminates the JVM, so every listener call is guarded: a throw or a false
 * return is remembered, the native operation is told to stop (the progress callback returns nonzero from then on;
 * the log callback cannot return a verdict, so its stop takes effect at the next progress report, which comes
 * within one optimizer step), and {@link #rethrow()} raises the listener's exception once the downcall is back.
 * The stubs live in the call's confined arena: native code calls them only on the calling thread, during the call.
 */
final class Upcall implements fq_progress_fn.Function, fq_calibration_log_fn.Function {
    private final ProgressListener progress;
    private final CalibrationListener calibration;
    private Throwable thrown;
    private boolean stop;

    private Upcall(ProgressListener progress, CalibrationListener calibration) {
        this.progress = progress;
        this.calibration = calibration;
    }

    /** A bridge for a progress listener; null when there is none. */
    static Upcall of(ProgressListener listener) {
        return listener == null ? null : new Upcall(listener, null);
    }

    /** A bridge for both callbacks of a calibration; null when there is no listener. */
    static Upcall of(CalibrationListener listener) {
        return listener == null ? null : new Upcall(listener, listener);
    }

    /** The fq_progress_fn stub, valid while {@code arena} is open. */
    MemorySegment progressStub(Arena arena) {
        return fq_progress_fn.allocate(this, arena);
    }

    /** The fq_calibration_log_fn stub, valid while {@code arena} is open. */
    MemorySegment logStub(Arena arena) {
        return fq_calibration_log_fn.allocate(this, arena);
    }

    @Override
    public int apply(MemorySegment userData, MemorySegment stage, long done, long total) {
        if (stop) {
            return 1;
        }
        try {
            if (!progress.onProgress(Native.staticString(stage), done, total)) {
                stop = true;
            }
        } catch (Throwable t) {
            thrown = t;
            stop = true;
        }
        return stop ? 1 : 0;
    }

    @Override
    public void apply(MemorySegment userData, MemorySegment event) {
        if (stop || calibration == null) {
            return;
        }
        try {
            // The event is a zero-length address; it is valid only during this call, so it is copied out now.
            MemorySegment e = event.reinterpret(fq_calibration_event.layout().byteSize());
            CalibrationEvent copy = new CalibrationEvent(fq_calibration_event.layer(e),
                    fq_calibration_event.n_layer(e), fq_calibration_event.epoch(e), fq_calibration_event.n_epochs(e),
                    fq_calibration_event.mse(e), fq_calibration_event.lr(e), fq_calibration_event.seconds(e));
            if (!calibration.onEpoch(copy)) {
                stop = true;
            }
        } catch (Throwable t) {
            thrown = t;
            stop = true;
        }
    }

    /** Whether a listener threw or asked to stop. */
    boolean stopped() {
        return stop;
    }

    /** Rethrows what a listener threw, if anything: unchecked as is, checked wrapped. */
    void rethrow() {
        if (thrown instanceof RuntimeException r) {
            throw r;
        }
        if (thrown instanceof Error e) {
            throw e;
        }
        if (thrown != null) {
            throw new IllegalStateException("listener failed", thrown);
        }
    }
}

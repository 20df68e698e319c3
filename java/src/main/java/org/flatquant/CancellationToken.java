package org.flatquant;

import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Cancels long operations from any thread: pass it in the operation's options, call {@link #cancel()} from
 * elsewhere, and the operation throws {@link CancelledException} within one step.
 *
 * <p>Thread safe. {@link #close()} throws {@link IllegalStateException} while an operation uses the token.
 *
 * @since 0.1
 */
public final class CancellationToken extends NativeResource {

    /** Creates a token that is not cancelled. */
    public CancellationToken() {
        super("cancellation token", "running operation(s)");
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment out = call.allocate(C_POINTER);
            Native.check(fq_cancel_token_create(out, err), err);
            adopt(out.get(C_POINTER, 0), h -> fq_cancel_token_free(h));
        }
    }

    /** Requests cancellation. Safe from any thread, any number of times. */
    public void cancel() {
        fq_cancel_token_cancel(handle());
    }

    /**
     * Whether {@link #cancel()} was called since creation or the last {@link #reset()}.
     *
     * @return true when cancelled
     */
    public boolean isCancelled() {
        return fq_cancel_token_is_cancelled(handle()) != 0;
    }

    /** Clears the request, so the token can serve another operation. */
    public void reset() {
        fq_cancel_token_reset(handle());
    }
}

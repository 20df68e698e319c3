package org.flatquant;

import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;
import org.flatquant.bindings.fq_session_options;

/**
 * What {@link Session} and {@link BatchSession} share: the native session (created with its sequence count, keeping
 * its model open until it is freed), the one-caller-at-a-time guard, and the calls that do not depend on the number
 * of sequences ({@link #reset()}, {@link #position()}, {@link #close()}).
 */
abstract class NativeSession extends NativeResource {
    private final String kind;
    final Model model;
    final int contextLength;
    final int vocabSize;
    /** Not a reentrant lock: a listener that calls back into its own session must get BUSY, not corrupt it. */
    private final AtomicBoolean busy = new AtomicBoolean();

    /**
     * @param kind "session" or "batch session", for messages
     * @param requestedContext KV-cache tokens per sequence; 0 for the default
     * @param sequences sequences decoded together; the native side checks the range
     */
    NativeSession(String kind, Model model, int requestedContext, int sequences) {
        super(kind, "user(s)");
        this.kind = kind;
        this.model = model;
        this.vocabSize = model.info().vocabSize();
        this.contextLength = open(model, requestedContext, sequences);
    }

    private int open(Model model, int requestedContext, int sequences) {
        ModelInfo info = model.info();
        if (requestedContext > info.contextLength()) {
            throw new InvalidArgumentException("a session of " + requestedContext
                    + " tokens exceeds the model's context length " + info.contextLength());
        }
        model.retain();
        boolean ok = false;
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment opts = fq_session_options.allocate(call);
            fq_session_options_init(opts);
            fq_session_options.n_ctx(opts, requestedContext);
            fq_session_options.n_seq(opts, sequences);
            MemorySegment out = call.allocate(C_POINTER);
            Native.check(fq_session_create(model.handle(), opts, out, err), err);
            adopt(out.get(C_POINTER, 0), h -> {
                fq_session_free(h);
                model.release();
            });
            ok = true;
        } finally {
            if (!ok) {
                model.release();
            }
        }
        return requestedContext == 0 ? Math.min(info.contextLength(), 4096) : requestedContext;
    }

    /**
     * The model this session decodes with.
     *
     * @return the model
     */
    public Model model() {
        return model;
    }

    /**
     * How many tokens the KV cache (of each sequence) holds at most.
     *
     * @return the context length in tokens
     */
    public int contextLength() {
        return contextLength;
    }

    /** Forgets every token (of every sequence): the next decode starts at position 0. */
    public void reset() {
        lock();
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            Native.check(fq_session_reset(handle(), err), err);
        } finally {
            unlock();
        }
    }

    /**
     * The number of tokens in the context (of each sequence: the sequences of a batch all have the same).
     *
     * @return tokens decoded since creation or the last {@link #reset()}
     */
    public long position() {
        lock();
        try {
            return positionLocked();
        } finally {
            unlock();
        }
    }

    /** {@link #position()} for a caller that holds the session. */
    final long positionLocked() {
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment out = call.allocate(C_LONG_LONG);
            Native.check(fq_session_position(handle(), out, err), err);
            return out.get(C_LONG_LONG, 0);
        }
    }

    /**
     * Frees the native session. Idempotent.
     *
     * @throws IllegalStateException while a call on this session is running
     */
    @Override
    public void close() {
        if (busy.get()) {
            throw new IllegalStateException("cannot close the " + kind + " while a call on it is running");
        }
        super.close();
    }

    /** Takes the session for one call; throws {@link BusyException} when another call has it. */
    final void lock() {
        ensureOpen();
        if (!busy.compareAndSet(false, true)) {
            throw new BusyException("the " + kind + " is in use by another call");
        }
    }

    final void unlock() {
        busy.set(false);
    }
}

package org.flatquant;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.function.Consumer;

/**
 * The life cycle every native owner shares: one shared {@link Arena} that owns the handle (closing the arena
 * runs the native free), an idempotent {@link #close()}, and a count of users (child objects, running
 * operations) that makes closing refuse instead of freeing memory something still points to.
 *
 * <p>A handle segment lives in the owner's arena, so a downcall that races with {@code close()} either keeps the
 * arena open for its duration (close then fails) or sees it closed and throws {@link IllegalStateException}: the
 * JVM never touches freed memory.
 */
abstract class NativeResource implements AutoCloseable {
    private final Arena arena = Arena.ofShared();
    private final String kind;
    private final String userKind;
    private MemorySegment handle;
    private boolean closed;
    private int users;

    NativeResource(String kind, String userKind) {
        this.kind = kind;
        this.userKind = userKind;
    }

    /** Takes ownership of a freshly created native object; {@code free} runs when the resource closes. */
    final void adopt(MemorySegment raw, Consumer<MemorySegment> free) {
        handle = raw.reinterpret(arena, free);
    }

    /** The handle, bound to this owner's arena. */
    final MemorySegment handle() {
        ensureOpen();
        return handle;
    }

    final void ensureOpen() {
        synchronized (this) {
            if (closed) {
                throw new IllegalStateException(kind + " is closed");
            }
        }
    }

    final synchronized boolean isClosed() {
        return closed;
    }

    /** Marks one more user; fails when closed. Pair with {@link #release()}. */
    final synchronized void retain() {
        if (closed) {
            throw new IllegalStateException(kind + " is closed");
        }
        users++;
    }

    final synchronized void release() {
        users--;
    }

    /**
     * Frees the native object. Idempotent.
     *
     * <p>A refused close changes nothing: other threads never see the object closed unless the close succeeds
     * (the state changes only after the native object was freed, under the lock every use of the object takes).
     *
     * @throws IllegalStateException while users remain (nothing is freed then), or while another thread is inside
     *     a call on this object
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            if (users > 0) {
                throw new IllegalStateException("cannot close the " + kind + ": " + users + " " + userKind
                        + " still use it; close them first");
            }
            try {
                // Fails at once, freeing nothing, while a downcall holds the arena; never waits for one. The free
                // action may release a parent (a lock on the parent): locks are always taken child before parent.
                arena.close();
            } catch (IllegalStateException e) {
                throw new IllegalStateException("cannot close the " + kind + " while another thread is calling it",
                        e);
            }
            closed = true;
        }
    }
}

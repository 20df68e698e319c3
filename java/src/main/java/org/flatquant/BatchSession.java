package org.flatquant;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * Incremental decoding of several sequences together, each with its own KV cache: every call appends the same
 * number of tokens to every sequence and returns each sequence's last logits.
 *
 * <p>The sequences advance in lock step, so the prompts of one batch must have equal lengths (group prompts by
 * length); {@link #position()} is the common length of the sequences. Row {@code i} of every call always goes to
 * sequence {@code i}.
 *
 * <p>On a CUDA engine one call is one step of the GPU engine for the whole batch (one pass over the weights for all
 * sequences), which is where batching pays; on the CPU the sequences run one after another and give exactly the
 * results of separate {@link Session}s.
 *
 * <p>Same contract as {@link Session}: one caller at a time (a concurrent call throws {@link BusyException} and
 * leaves the session untouched); close it before its model; after {@link #close()} every method throws
 * {@link IllegalStateException}.
 *
 * @since 0.1
 */
public final class BatchSession extends NativeSession {
    private final int sequences;

    BatchSession(Model model, int sequences, int contextLength) {
        super("batch session", model, contextLength, sequences);
        this.sequences = sequences;
    }

    /**
     * How many sequences the session decodes together.
     *
     * @return the number of sequences, 1 to 256
     */
    public int sequences() {
        return sequences;
    }

    /**
     * Appends {@code tokens[i]} to sequence {@code i} for every sequence and returns the logits that follow the last
     * token of each.
     *
     * @param tokens {@code int[sequences()][n]} with the same {@code n >= 1} in every row; every sequence must have
     *     room for {@code n} more tokens
     * @return {@code float[sequences()][vocabSize]}: row {@code i} is the logits after sequence {@code i}'s last token
     * @throws InvalidArgumentException for a wrong number of rows, rows of different lengths or empty rows (found
     *     before any native call), a bad id or a full context (the session is then unchanged)
     * @throws BusyException when another thread is using the session
     */
    public float[][] decode(int[][] tokens) {
        lock();
        try (Arena call = Arena.ofConfined()) {
            int rowTokens = checkRows(tokens);
            // logits: [sequences][vocabSize] floats, row-major, as fq_session_decode_batch writes them.
            MemorySegment logits = call.allocate(JAVA_FLOAT, (long) sequences * vocabSize);
            decodeInto(call, tokens, rowTokens, logits);
            float[][] rows = new float[sequences][vocabSize];
            for (int s = 0; s < sequences; s++) {
                MemorySegment.copy(logits, JAVA_FLOAT, (long) s * vocabSize * Float.BYTES, rows[s], 0, vocabSize);
            }
            return rows;
        } finally {
            unlock();
        }
    }

    /**
     * Appends {@code tokens[i]} to sequence {@code i} without computing logits for the caller (a prefill whose
     * logits are not needed).
     *
     * @param tokens {@code int[sequences()][n]} with the same {@code n >= 1} in every row
     * @throws InvalidArgumentException as {@link #decode(int[][])}
     * @throws BusyException when another thread is using the session
     */
    public void append(int[][] tokens) {
        lock();
        try (Arena call = Arena.ofConfined()) {
            int rowTokens = checkRows(tokens);
            decodeInto(call, tokens, rowTokens, MemorySegment.NULL);
        } finally {
            unlock();
        }
    }

    /** Checks the shape the C ABI cannot see (it takes one flat array) and returns the common row length. */
    private int checkRows(int[][] tokens) {
        Objects.requireNonNull(tokens, "tokens");
        if (tokens.length != sequences) {
            throw new InvalidArgumentException("a batch session of " + sequences + " sequences needs "
                    + sequences + " rows of tokens, got " + tokens.length);
        }
        int n = -1;
        for (int s = 0; s < tokens.length; s++) {
            int[] row = Objects.requireNonNull(tokens[s], "tokens[" + s + "]");
            if (n < 0) {
                n = row.length;
                if (n == 0) {
                    throw new InvalidArgumentException("no tokens given (tokens[0] is empty)");
                }
            } else if (row.length != n) {
                throw new InvalidArgumentException("every sequence of a batch advances by the same number of "
                        + "tokens: tokens[0] has " + n + ", tokens[" + s + "] has " + row.length);
            }
        }
        return n;
    }

    private void decodeInto(Arena call, int[][] tokens, int rowTokens, MemorySegment logits) {
        MemorySegment err = Native.error(call);
        // ids: [sequences][rowTokens] int32, row-major.
        MemorySegment ids = call.allocate(JAVA_INT, (long) sequences * rowTokens);
        for (int s = 0; s < sequences; s++) {
            MemorySegment.copy(tokens[s], 0, ids, JAVA_INT, (long) s * rowTokens * Integer.BYTES, rowTokens);
        }
        long capacity = logits.equals(MemorySegment.NULL) ? 0 : logits.byteSize() / Float.BYTES;
        Native.check(fq_session_decode_batch(handle(), ids, rowTokens, logits, capacity, err), err);
    }
}

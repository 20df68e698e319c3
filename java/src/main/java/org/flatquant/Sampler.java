package org.flatquant;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import org.flatquant.bindings.fq_sampler_options;

/**
 * Picks the next token from a row of logits: greedy (argmax, lowest id on ties) at temperature 0, otherwise
 * temperature, then top-k, then top-p (nucleus) sampling from a random stream that is a pure function of the seed.
 *
 * <p>One caller at a time: a call while another thread is sampling throws {@link BusyException}.
 *
 * @since 0.1
 */
public final class Sampler extends NativeResource {
    private final AtomicBoolean busy = new AtomicBoolean();

    private Sampler(float temperature, float topP, int topK, long seed) {
        super("sampler", "user(s)");
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment opts = fq_sampler_options.allocate(call);
            fq_sampler_options_init(opts);
            fq_sampler_options.temperature(opts, temperature);
            fq_sampler_options.top_p(opts, topP);
            fq_sampler_options.top_k(opts, topK);
            fq_sampler_options.seed(opts, seed);
            MemorySegment out = call.allocate(C_POINTER);
            Native.check(fq_sampler_create(opts, out, err), err);
            adopt(out.get(C_POINTER, 0), h -> fq_sampler_free(h));
        }
    }

    /**
     * A greedy sampler: always the highest logit, the lowest id on ties.
     *
     * @return a new sampler; close it
     */
    public static Sampler greedy() {
        return new Sampler(0f, 1f, 0, 0);
    }

    /**
     * A sampler.
     *
     * @param temperature 0 for greedy, otherwise the softmax temperature (&gt; 0)
     * @param topP the nucleus mass in (0, 1]; 1 turns it off
     * @param topK keep the k most likely tokens; 0 turns it off
     * @param seed the seed of the random stream (the same seed gives the same choices)
     * @return a new sampler; close it
     * @throws InvalidArgumentException for a parameter out of range
     */
    public static Sampler create(float temperature, float topP, int topK, long seed) {
        GenerationOptions.checkSampling(temperature, topP, topK);
        return new Sampler(temperature, topP, topK, seed);
    }

    /**
     * Frees the native sampler. Idempotent.
     *
     * @throws IllegalStateException while a call on this sampler is running
     */
    @Override
    public void close() {
        if (busy.get()) {
            throw new IllegalStateException("cannot close the sampler while a call on it is running");
        }
        super.close();
    }

    /**
     * Picks a token.
     *
     * @param logits one row of logits, {@code vocabSize} floats
     * @return the chosen token id
     */
    public int sample(float[] logits) {
        Objects.requireNonNull(logits, "logits");
        if (logits.length == 0) {
            throw new InvalidArgumentException("no logits given");
        }
        try (Arena call = Arena.ofConfined()) {
            return sample(call.allocateFrom(JAVA_FLOAT, logits), logits.length);
        }
    }

    /**
     * Picks a token from logits in native memory, without copying them.
     *
     * @param logits at least {@code nVocab} floats
     * @param nVocab the number of logits
     * @return the chosen token id
     */
    public int sample(MemorySegment logits, int nVocab) {
        if (nVocab < 1 || logits.byteSize() < (long) nVocab * Float.BYTES) {
            throw new InvalidArgumentException("need " + nVocab + " logits, the segment holds "
                    + logits.byteSize() / Float.BYTES);
        }
        if (!busy.compareAndSet(false, true)) {
            throw new BusyException("the sampler is in use by another thread");
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment out = call.allocate(C_INT);
            Native.check(fq_sampler_sample(handle(), logits, nVocab, out, err), err);
            return out.get(C_INT, 0);
        } finally {
            busy.set(false);
        }
    }
}

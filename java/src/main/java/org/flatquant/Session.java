package org.flatquant;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.flatquant.bindings.flatquant_h.*;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Objects;

/**
 * Incremental decoding of one sequence with a KV cache: feed tokens, get the logits of the last one, repeat.
 *
 * <p>One caller at a time: a call while another call is in progress on the same session (from another thread,
 * or from a {@link TokenListener} of {@link #generate}) throws {@link BusyException} and leaves the session
 * untouched. Sessions of one model may run in parallel on different
 * threads. Close the session before its model; after {@link #close()} every method throws
 * {@link IllegalStateException}.
 *
 * @since 0.1
 */
public final class Session extends NativeSession {
    /** Prompt tokens kept in front of the generated ones when detokenizing, so the first piece gets its spacing. */
    private static final int STREAM_CONTEXT_TOKENS = 4;

    Session(Model model, int requestedContext) {
        super("session", model, requestedContext, 1);
    }

    /**
     * Appends tokens to the context and returns the logits that follow the last one.
     *
     * @param tokens at least one id; the context must have room for all of them
     * @return {@code float[vocabSize]}
     * @throws InvalidArgumentException for a bad id or a full context (the session is then unchanged)
     * @throws BusyException when another thread is using the session
     */
    public float[] decode(int[] tokens) {
        lock();
        try (Arena call = Arena.ofConfined()) {
            MemorySegment logits = call.allocate(JAVA_FLOAT, vocabSize);
            decodeInto(call, tokens, logits);
            return logits.toArray(JAVA_FLOAT);
        } finally {
            unlock();
        }
    }

    /**
     * Appends tokens to the context without computing logits for the caller.
     *
     * @param tokens at least one id; the context must have room for all of them
     */
    public void append(int[] tokens) {
        lock();
        try (Arena call = Arena.ofConfined()) {
            decodeInto(call, tokens, MemorySegment.NULL);
        } finally {
            unlock();
        }
    }

    private void decodeInto(Arena call, int[] tokens, MemorySegment logits) {
        Objects.requireNonNull(tokens, "tokens");
        if (tokens.length == 0) {
            throw new InvalidArgumentException("no tokens given");
        }
        MemorySegment err = Native.error(call);
        MemorySegment ids = call.allocateFrom(JAVA_INT, tokens);
        long capacity = logits.equals(MemorySegment.NULL) ? 0 : logits.byteSize() / Float.BYTES;
        Native.check(fq_session_decode(handle(), ids, tokens.length, logits, capacity, err), err);
    }

    /**
     * Generates a continuation of {@code prompt}, which is appended to whatever the session already holds.
     * Stops at EOS (unless the options say otherwise), after {@code maxTokens} tokens, when the listener returns
     * false, when the cancellation token is cancelled, or when the context is full.
     *
     * <p>Afterwards the context holds the prompt and every generated token but the last, whose logits were never
     * needed; to continue the text, start the next call's prompt with that token.
     *
     * @param prompt at least one token id
     * @param options sampling parameters and limits
     * @param listener receives each token and its text as it is generated; may be null
     * @return the generated tokens and text, and why generation stopped
     */
    public GenerationResult generate(int[] prompt, GenerationOptions options, TokenListener listener) {
        Objects.requireNonNull(prompt, "prompt");
        Objects.requireNonNull(options, "options");
        if (prompt.length == 0) {
            throw new InvalidArgumentException("the prompt has no tokens");
        }
        CancellationToken token = options.cancellation();
        lock();
        boolean retained = false;
        try {
            if (token != null) {
                token.retain();
                retained = true;
            }
            return generateLocked(prompt, options, token, listener);
        } finally {
            if (retained) {
                token.release();
            }
            unlock();
        }
    }

    private GenerationResult generateLocked(int[] prompt, GenerationOptions options, CancellationToken token,
                                            TokenListener listener) {
        try (Arena call = Arena.ofConfined();
             Sampler sampler = Sampler.create(options.temperature(), options.topP(), options.topK(),
                     options.seed())) {
            long start = positionLocked();
            if (start + prompt.length > contextLength) {
                throw new InvalidArgumentException("the prompt of " + prompt.length + " tokens does not fit the "
                        + (contextLength - start) + " free positions of the session");
            }
            int eos = model.info().eosId();
            MemorySegment logits = call.allocate(JAVA_FLOAT, vocabSize);
            TextStream text = new TextStream(model,
                    Arrays.copyOfRange(prompt, Math.max(0, prompt.length - STREAM_CONTEXT_TOKENS), prompt.length));
            int[] generated = new int[Math.min(options.maxTokens(), 1024)];
            int count = 0;
            long pos = start + prompt.length;
            decodeInto(call, prompt, logits);
            GenerationResult.StopReason reason;
            while (true) {
                if (token != null && token.isCancelled()) {
                    reason = GenerationResult.StopReason.CANCELLED;
                    break;
                }
                int next = sampler.sample(logits, vocabSize);
                if (next == eos && options.stopAtEos()) {
                    reason = GenerationResult.StopReason.EOS;
                    break;
                }
                if (count == generated.length) {
                    generated = Arrays.copyOf(generated, Math.min(options.maxTokens(), count * 2));
                }
                generated[count++] = next;
                String piece = text.push(next);
                if (listener != null && !listener.onToken(next, piece)) {
                    reason = GenerationResult.StopReason.LISTENER;
                    break;
                }
                if (count == options.maxTokens()) {
                    reason = GenerationResult.StopReason.MAX_TOKENS;
                    break;
                }
                if (pos >= contextLength) {
                    reason = GenerationResult.StopReason.CONTEXT_FULL;
                    break;
                }
                decodeInto(call, new int[] {next}, logits);
                pos++;
            }
            return new GenerationResult(Arrays.copyOf(generated, count), text.text(), reason);
        }
    }

    /**
     * Turns generated tokens into text piece by piece. Detokenizing token by token would lose the spacing rules
     * that depend on the previous token and split multi-byte characters, so each step detokenizes the whole
     * continuation (behind a few prompt tokens) and hands out only the new, complete UTF-8 characters.
     */
    private static final class TextStream {
        private final Model model;
        private final int baseBytes;
        private int[] tokens;
        private int count;
        private byte[] bytes = new byte[0];
        private int emitted;
        private final ByteArrayOutputStream all = new ByteArrayOutputStream();

        TextStream(Model model, int[] context) {
            this.model = model;
            this.baseBytes = model.detokenizeBytes(context).length;
            this.tokens = Arrays.copyOf(context, context.length + 16);
            this.count = context.length;
            this.emitted = baseBytes;
        }

        String push(int token) {
            if (count == tokens.length) {
                tokens = Arrays.copyOf(tokens, tokens.length * 2);
            }
            tokens[count++] = token;
            bytes = model.detokenizeBytes(Arrays.copyOf(tokens, count));
            int end = completeEnd(bytes);
            if (end <= emitted) {
                return "";
            }
            all.write(bytes, emitted, end - emitted);
            String piece = new String(bytes, emitted, end - emitted, StandardCharsets.UTF_8);
            emitted = end;
            return piece;
        }

        /** Everything emitted, plus a trailing incomplete character (as U+FFFD) if generation ended inside one. */
        String text() {
            if (bytes.length > emitted) {
                all.write(bytes, emitted, bytes.length - emitted);
                emitted = bytes.length;
            }
            return all.toString(StandardCharsets.UTF_8);
        }

        /** The length of the longest prefix of {@code b} that does not end inside a UTF-8 sequence. */
        private static int completeEnd(byte[] b) {
            int n = b.length;
            for (int i = n - 1; i >= Math.max(0, n - 4); i--) {
                int v = b[i] & 0xFF;
                if ((v & 0xC0) == 0x80) {
                    continue; // continuation byte: keep looking for the lead byte
                }
                int len = v < 0x80 ? 1 : (v & 0xE0) == 0xC0 ? 2 : (v & 0xF0) == 0xE0 ? 3 : (v & 0xF8) == 0xF0 ? 4 : 1;
                return i + len <= n ? n : i;
            }
            return n;
        }
    }
}

package org.flatquant.serve;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;
import org.flatquant.TokenListener;

/**
 * A backend whose answers are known in advance, for testing the HTTP layer, the queues, cancellation and shutdown
 * without timing assumptions about a real model.
 *
 * <p>Tokens are bytes (vocabulary 256, ids = UTF-8 bytes of the text, no BOS). The answer to a prompt is the
 * prompt's bytes in reverse order, then EOS; with {@code stopAtEos} off it cycles. Each token can be delayed, and
 * a gate can hold every generation before its first token. It records how many generations ran at once per
 * session, which must never exceed one.
 */
final class FakeBackend implements Backend {
    static final int EOS = 0;

    private final int sessions;
    private final int contextLength;
    private final ChatFormat chat;
    volatile long tokenDelayMillis;
    /** When not null, each generation takes a permit before its first token. */
    volatile Semaphore gate;

    final AtomicIntegerArray activePerSession;
    final AtomicBoolean sessionOverlap = new AtomicBoolean();
    final AtomicInteger running = new AtomicInteger();
    final AtomicInteger started = new AtomicInteger();
    final AtomicInteger stoppedByListener = new AtomicInteger();
    final AtomicBoolean closed = new AtomicBoolean();

    FakeBackend(int sessions, int contextLength, ChatFormat chat) {
        this.sessions = sessions;
        this.contextLength = contextLength;
        this.chat = chat;
        this.activePerSession = new AtomicIntegerArray(sessions);
    }

    /** The answer {@link #generate} gives, computed independently of it. */
    static String expectedAnswer(String prompt, int maxTokens) {
        String reversed = new StringBuilder(prompt).reverse().toString();
        return reversed.length() > maxTokens ? reversed.substring(0, maxTokens) : reversed;
    }

    @Override
    public String modelId() {
        return "fake-model";
    }

    @Override
    public int sessions() {
        return sessions;
    }

    @Override
    public int contextLength() {
        return contextLength;
    }

    @Override
    public int vocabSize() {
        return 256;
    }

    @Override
    public int[] encode(String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[b.length];
        for (int i = 0; i < b.length; i++) {
            ids[i] = b[i] & 0xFF;
        }
        return ids;
    }

    @Override
    public ChatFormat chatFormat() {
        return chat;
    }

    @Override
    public GenerationResult generate(int session, int[] prompt, GenerationOptions options, TokenListener listener) {
        if (closed.get()) {
            throw new IllegalStateException("backend closed");
        }
        if (activePerSession.incrementAndGet(session) > 1) {
            sessionOverlap.set(true);
        }
        running.incrementAndGet();
        started.incrementAndGet();
        try {
            Semaphore g = gate;
            if (g != null) {
                g.acquireUninterruptibly();
            }
            int[] out = new int[options.maxTokens()];
            int n = 0;
            GenerationResult.StopReason reason = GenerationResult.StopReason.MAX_TOKENS;
            for (int i = 0; n < options.maxTokens(); i++) {
                int token = i < prompt.length ? prompt[prompt.length - 1 - i] : EOS;
                if (token == EOS && options.stopAtEos()) {
                    reason = GenerationResult.StopReason.EOS;
                    break;
                }
                if (i >= prompt.length) {
                    token = prompt[(i - prompt.length) % prompt.length];
                }
                sleep();
                out[n++] = token;
                if (!listener.onToken(token, String.valueOf((char) token))) {
                    stoppedByListener.incrementAndGet();
                    reason = GenerationResult.StopReason.LISTENER;
                    break;
                }
            }
            return new GenerationResult(Arrays.copyOf(out, n), "", reason);
        } finally {
            running.decrementAndGet();
            activePerSession.decrementAndGet(session);
        }
    }

    private void sleep() {
        long ms = tokenDelayMillis;
        if (ms > 0) {
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void close() {
        if (running.get() > 0) {
            throw new IllegalStateException("closed while generating");
        }
        closed.set(true);
    }
}

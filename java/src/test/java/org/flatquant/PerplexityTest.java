package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Perplexity against an independent computation in Java, progress reports and cancellation. */
class PerplexityTest {
    static Engine engine;
    static Model model;

    @BeforeAll
    static void load() {
        java.nio.file.Path path = TestSupport.storiesModel(); // skips the class when absent
        engine = Engine.cpu(2);
        model = Model.load(engine, path);
    }

    @AfterAll
    static void close() {
        if (model != null) {
            model.close();
        }
        if (engine != null) {
            engine.close();
        }
    }

    /**
     * The reference: tokenize once, cut into windows, take each window's logits from {@link Model#logits}, and
     * sum -log softmax(row i)[token i+1] in double precision.
     */
    static double[] referenceNll(int[] all, int seqlen, long maxChunks) {
        int v = model.info().vocabSize();
        long chunks = all.length / seqlen;
        if (maxChunks > 0) {
            chunks = Math.min(chunks, maxChunks);
        }
        double nll = 0;
        long predicted = 0;
        for (int c = 0; c < chunks; c++) {
            int[] window = Arrays.copyOfRange(all, c * seqlen, (c + 1) * seqlen);
            float[] logits = model.logits(window);
            for (int i = 0; i + 1 < seqlen; i++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < v; j++) {
                    max = Math.max(max, logits[i * v + j]);
                }
                double sum = 0;
                for (int j = 0; j < v; j++) {
                    sum += Math.exp(logits[i * v + j] - max);
                }
                nll += max + Math.log(sum) - logits[i * v + window[i + 1]];
                predicted++;
            }
        }
        return new double[] {nll, predicted, chunks};
    }

    @Test
    void perplexityIsExpOfMeanNllFromLogits() {
        String text = TestSupport.STORY.repeat(2);
        int seqlen = 64;
        for (Bos bos : new Bos[] {Bos.YES, Bos.NO}) {
            PerplexityResult r = model.perplexity(text, PerplexityOptions.defaults().withSeqlen(seqlen).withBos(bos));
            int[] all = model.tokenizer().encode(text, bos);
            double[] ref = referenceNll(all, seqlen, -1);
            assertEquals(bos == Bos.YES, r.bos());
            assertEquals(all.length, r.tokens());
            assertEquals((long) ref[2], r.chunks());
            assertEquals((long) ref[1], r.predicted());
            assertEquals(r.chunks() * (seqlen - 1), r.predicted());
            // Both sides use the same FP32 logits; only the log-softmax accumulation differs (float vs double,
            // ~1e-6 relative per token), so the summed NLL agrees to far better than 1e-4 relative.
            assertEquals(ref[0], r.nllSum(), 1e-4 * ref[0]);
            assertEquals(Math.exp(ref[0] / ref[1]), r.perplexity(), 1e-4 * r.perplexity());
            assertEquals(Math.exp(r.meanNll()), r.perplexity(), 1e-9 * r.perplexity());
            assertTrue(r.seconds() >= 0);
        }
    }

    @Test
    void maxChunksLimitsTheWindows() {
        String text = TestSupport.STORY.repeat(2);
        PerplexityResult r = model.perplexity(text, PerplexityOptions.defaults().withSeqlen(32).withMaxChunks(2));
        assertEquals(2, r.chunks());
        assertEquals(62, r.predicted());
        double[] ref = referenceNll(model.tokenizer().encode(text, Bos.DEFAULT), 32, 2);
        assertEquals(ref[0], r.nllSum(), 1e-4 * ref[0]);
    }

    @Test
    void progressReachesTheTotal() {
        List<String> events = new ArrayList<>();
        PerplexityResult r = model.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(32),
                (stage, done, total) -> {
                    assertTrue(done <= total, stage + " " + done + "/" + total);
                    events.add(stage + " " + done + "/" + total);
                    return true;
                });
        assertTrue(events.contains("perplexity " + r.chunks() + "/" + r.chunks()), events.toString());
    }

    @Test
    void listenerReturningFalseCancels() {
        CancelledException e = assertThrows(CancelledException.class, () -> model.perplexity(TestSupport.STORY,
                PerplexityOptions.defaults().withSeqlen(32), (stage, done, total) -> !stage.equals("perplexity")
                        || done < 1));
        assertEquals(Status.CANCELLED, e.status());
        assertEquals("FQ_STATUS_CANCELLED", e.statusName());
    }

    @Test
    void listenerExceptionCancelsAndResurfaces() {
        IllegalArgumentException boom = new IllegalArgumentException("boom");
        IllegalArgumentException thrown = assertThrows(IllegalArgumentException.class, () -> model.perplexity(
                TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(32), (stage, done, total) -> {
                    throw boom;
                }));
        assertSame(boom, thrown);
    }

    @Test
    void cancelFromAnotherThread() throws Exception {
        String text = TestSupport.STORY.repeat(4);
        try (CancellationToken token = new CancellationToken()) {
            CountDownLatch started = new CountDownLatch(1);
            CountDownLatch cancelled = new CountDownLatch(1);
            Thread canceller = new Thread(() -> {
                try {
                    started.await();
                    token.cancel();
                    cancelled.countDown();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            canceller.start();
            AtomicLong lastDone = new AtomicLong();
            AtomicLong total = new AtomicLong();
            assertThrows(CancelledException.class, () -> model.perplexity(text,
                    PerplexityOptions.defaults().withSeqlen(16).withCancellation(token), (stage, done, all) -> {
                        if (stage.equals("perplexity")) {
                            lastDone.set(done);
                            total.set(all);
                            if (done == 1) {
                                started.countDown();
                                // Wait until the other thread has cancelled, so the outcome does not depend
                                // on scheduling.
                                try {
                                    assertTrue(cancelled.await(10, TimeUnit.SECONDS));
                                } catch (InterruptedException e) {
                                    throw new IllegalStateException(e);
                                }
                            }
                        }
                        return true;
                    }));
            canceller.join();
            assertTrue(token.isCancelled());
            assertTrue(total.get() > 3, "the text must span several windows");
            assertTrue(lastDone.get() < total.get(), "cancelled before the end: " + lastDone + "/" + total);
            // A reset token serves again.
            token.reset();
            assertFalse(token.isCancelled());
            PerplexityResult r = model.perplexity(text,
                    PerplexityOptions.defaults().withSeqlen(16).withMaxChunks(2).withCancellation(token));
            assertEquals(2, r.chunks());
        }
    }

    @Test
    @SuppressWarnings("try") // closing inside try-with-resources is what is tested
    void tokenInUseCannotBeClosed() {
        try (CancellationToken token = new CancellationToken()) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> model.perplexity(
                    TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(32).withCancellation(token),
                    (stage, done, total) -> {
                        token.close();
                        return true;
                    }));
            assertTrue(e.getMessage().contains("running operation"), e.getMessage());
            assertFalse(token.isCancelled()); // still open and usable
        }
    }
}

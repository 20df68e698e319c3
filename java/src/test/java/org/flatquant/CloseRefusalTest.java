package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** A refused close changes nothing: the object stays fully usable, also for other threads during the refusal. */
class CloseRefusalTest {

    @Test
    void refusedForOpenSessionsTheModelKeepsWorking() {
        try (Engine e = Engine.cpu(1); Model m = Model.load(e, TestSupport.storiesModel())) {
            Session s = m.newSession(32);
            for (int i = 0; i < 3; i++) {
                IllegalStateException refused = assertThrows(IllegalStateException.class, m::close);
                assertTrue(refused.getMessage().contains("1 session(s)"), refused.getMessage());
            }
            assertEquals(512, m.info().vocabSize());
            assertEquals(2 * 512, m.logits(new int[] {1, 2}).length);
            try (Session another = m.newSession(8)) {
                another.decode(new int[] {1});
            }
            s.decode(new int[] {1, 2});
            s.close();
            m.close();
            assertThrows(IllegalStateException.class, m::info);
        }
    }

    /**
     * One thread sits inside a native call (its progress listener waits), so every close is refused; meanwhile
     * another thread keeps using the model and must never see it closed, not even for the instant of a refusal.
     */
    @Test
    void refusedDuringACallOtherThreadsNeverSeeItClosed() throws Exception {
        try (Engine e = Engine.cpu(1); Model m = Model.load(e, TestSupport.storiesModel())) {
            CountDownLatch inCall = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            AtomicReference<Throwable> callFailed = new AtomicReference<>();
            Thread caller = new Thread(() -> {
                try {
                    m.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(16).withMaxChunks(1),
                            (stage, done, total) -> {
                                inCall.countDown();
                                try {
                                    return release.await(60, TimeUnit.SECONDS);
                                } catch (InterruptedException ex) {
                                    return false;
                                }
                            });
                } catch (Throwable t) {
                    callFailed.set(t);
                }
            });
            caller.start();
            assertTrue(inCall.await(60, TimeUnit.SECONDS));

            AtomicBoolean stop = new AtomicBoolean();
            AtomicInteger uses = new AtomicInteger();
            AtomicReference<Throwable> useFailed = new AtomicReference<>();
            Thread user = new Thread(() -> {
                try {
                    while (!stop.get()) {
                        m.info();
                        m.tokenizer().encode("a", Bos.NO);
                        uses.incrementAndGet();
                    }
                } catch (Throwable t) {
                    useFailed.set(t);
                }
            });
            user.start();
            int refusals = 0;
            long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(500);
            while (System.nanoTime() < end || refusals < 1000) {
                IllegalStateException refused = assertThrows(IllegalStateException.class, m::close);
                assertTrue(refused.getMessage().contains("another thread"), refused.getMessage());
                refusals++;
            }
            stop.set(true);
            user.join();
            release.countDown();
            caller.join();
            assertEquals(null, useFailed.get(), "the model looked closed during a refused close");
            assertEquals(null, callFailed.get());
            assertTrue(uses.get() > 0);
            // After all of that the model works and closes normally.
            assertEquals(512, m.info().vocabSize());
        }
    }
}

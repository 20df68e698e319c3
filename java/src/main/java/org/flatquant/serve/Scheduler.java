package org.flatquant.serve;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One queue and one worker thread per session of the {@link Backend}, and admission control in front of them.
 *
 * <p>A request is admitted when fewer than {@code maxConcurrent} requests are queued or running; otherwise it
 * is refused at once (HTTP 429) rather than waiting without bound. An admitted job goes to the session with the
 * least work (queued plus running). Workers are platform threads: a downcall pins a virtual thread to its
 * carrier, and a session's work is long native calls.
 */
final class Scheduler {
    private final Backend backend;
    private final int maxConcurrent;
    private final Semaphore admitted;
    private final List<Worker> workers = new ArrayList<>();
    private volatile boolean accepting = true;

    final AtomicLong completed = new AtomicLong();
    final AtomicLong cancelled = new AtomicLong();
    final AtomicLong failed = new AtomicLong();
    final AtomicLong rejected = new AtomicLong();

    Scheduler(Backend backend, int maxConcurrent) {
        this.backend = backend;
        this.maxConcurrent = maxConcurrent;
        this.admitted = new Semaphore(maxConcurrent);
        for (int i = 0; i < backend.sessions(); i++) {
            workers.add(new Worker(i));
        }
        for (Worker w : workers) {
            w.thread.start();
        }
    }

    /**
     * Admits a job and queues it on the least busy session.
     *
     * @throws ApiException 503 while shutting down, 429 when {@code maxConcurrent} requests are in the system
     */
    void submit(Job job) {
        if (!accepting) {
            rejected.incrementAndGet();
            throw new ApiException(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        if (!admitted.tryAcquire()) {
            rejected.incrementAndGet();
            throw new ApiException(429, "rate_limit_error", null, "too_many_requests", "the server is at its limit "
                    + "of " + maxConcurrent + " concurrent requests; retry later");
        }
        Worker best = workers.get(0);
        for (Worker w : workers) {
            if (w.load() < best.load()) {
                best = w;
            }
        }
        best.queue.add(job);
    }

    int maxConcurrent() {
        return maxConcurrent;
    }

    /** Requests admitted and not finished (queued or running). */
    int inFlight() {
        return maxConcurrent - admitted.availablePermits();
    }

    int running() {
        int n = 0;
        for (Worker w : workers) {
            n += w.current != null ? 1 : 0;
        }
        return n;
    }

    int queued() {
        int n = 0;
        for (Worker w : workers) {
            n += w.queue.size();
        }
        return n;
    }

    /** New submissions get 503 from now on. */
    void stopAccepting() {
        accepting = false;
    }

    boolean isAccepting() {
        return accepting;
    }

    /**
     * Waits until no request is queued or running.
     *
     * @return true when idle, false when the timeout passed first
     */
    boolean awaitIdle(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (inFlight() > 0) {
            if (System.nanoTime() - deadline >= 0) {
                return false;
            }
            Thread.sleep(5);
        }
        return true;
    }

    /** Cancels every queued and running job; each ends within one token. */
    void cancelAll() {
        for (Worker w : workers) {
            Job j = w.current;
            if (j != null) {
                j.cancel();
            }
            for (Job q : w.queue) {
                q.cancel();
            }
        }
    }

    /**
     * Stops the worker threads once their queues are empty and waits for them.
     *
     * @return true when every worker ended within the timeout
     */
    boolean stopWorkers(Duration timeout) throws InterruptedException {
        for (Worker w : workers) {
            w.stop = true;
            w.thread.interrupt();
        }
        long deadline = System.nanoTime() + timeout.toNanos();
        for (Worker w : workers) {
            long left = Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
            w.thread.join(left);
            if (w.thread.isAlive()) {
                return false;
            }
        }
        return true;
    }

    /** The thread that owns one session. */
    private final class Worker {
        final int session;
        final LinkedBlockingQueue<Job> queue = new LinkedBlockingQueue<>();
        final Thread thread;
        volatile Job current;
        volatile boolean stop;

        Worker(int session) {
            this.session = session;
            this.thread = Thread.ofPlatform().name("flatquant-session-" + session).daemon(true)
                    .unstarted(this::loop);
        }

        int load() {
            return queue.size() + (current != null ? 1 : 0);
        }

        private void loop() {
            while (true) {
                Job job;
                try {
                    // A bounded wait, so a stop request is seen even if its interrupt was consumed elsewhere.
                    job = queue.poll(100, TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    job = null;
                }
                if (job == null) {
                    if (stop && queue.isEmpty()) {
                        return;
                    }
                    continue;
                }
                current = job;
                try {
                    switch (job.run(backend, session)) {
                        case COMPLETED -> completed.incrementAndGet();
                        case CANCELLED -> cancelled.incrementAndGet();
                        case FAILED -> failed.incrementAndGet();
                    }
                } finally {
                    current = null;
                    admitted.release();
                    Thread.interrupted(); // an interrupt meant for the wait must not hit the next job's native call
                }
            }
        }
    }
}

package org.flatquant.serve;

import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;

/**
 * One admitted request on its way through a session queue. The session's worker thread generates and posts
 * {@link Event}s; the HTTP thread of the request takes them and writes to the client. The two never wait on each
 * other: a slow or vanished client cannot stall the session, and the worker notices a {@link #cancel()} (client
 * gone, server shutting down) at the next token.
 */
final class Job {
    /** What the worker reports, in order: any number of {@link Text}, then one {@link Done} or {@link Failed}. */
    sealed interface Event permits Text, Done, Failed {
    }

    /** Answer text that is final (stop sequences already applied). */
    record Text(String text) implements Event {
    }

    /**
     * The end of the answer.
     *
     * @param finishReason {@code stop}, {@code length}, or {@code cancelled} when cancelled before the end
     * @param completionTokens tokens generated
     */
    record Done(String finishReason, int completionTokens) implements Event {
    }

    /** Generation failed; the error is what the client receives. */
    record Failed(ApiException error) implements Event {
    }

    final int[] prompt;
    final GenerationOptions options;
    private final StopMatcher stops;
    private final int[] stopTokens;
    private final BlockingQueue<Event> events = new LinkedBlockingQueue<>();
    private volatile boolean cancelled;

    /**
     * @param prompt the prompt's token ids
     * @param options sampling and limits (without a cancellation token)
     * @param stopStrings texts that end the answer
     * @param stopTokens token ids that end the answer
     */
    Job(int[] prompt, GenerationOptions options, List<String> stopStrings, int[] stopTokens) {
        this.prompt = prompt.clone();
        this.options = options;
        this.stops = new StopMatcher(stopStrings);
        this.stopTokens = stopTokens.clone();
    }

    /** Asks the worker to stop; safe from any thread. A job still queued is skipped. */
    void cancel() {
        cancelled = true;
    }

    boolean isCancelled() {
        return cancelled;
    }

    /**
     * The next event, waiting at most {@code millis}.
     *
     * @return the event, or null on timeout
     */
    Event poll(long millis) throws InterruptedException {
        return events.poll(millis, TimeUnit.MILLISECONDS);
    }

    /** How a job ended, for the server's counters. */
    enum Outcome {
        COMPLETED, CANCELLED, FAILED
    }

    /**
     * Runs the job on a session; called by the session's worker thread. Never throws: a failure becomes a
     * {@link Failed} event.
     */
    Outcome run(Backend backend, int session) {
        if (cancelled) {
            events.add(new Done("cancelled", 0));
            return Outcome.CANCELLED;
        }
        boolean[] stoppedHere = {false};
        try {
            GenerationResult r = backend.generate(session, prompt, options, (token, piece) -> {
                if (cancelled) {
                    return false;
                }
                for (int t : stopTokens) {
                    if (t == token) {
                        stoppedHere[0] = true;
                        return false;
                    }
                }
                String out = stops.push(piece);
                if (!out.isEmpty()) {
                    events.add(new Text(out));
                }
                if (stops.stopped()) {
                    stoppedHere[0] = true;
                    return false;
                }
                return true;
            });
            String tail = stops.flush();
            if (!tail.isEmpty()) {
                events.add(new Text(tail));
            }
            String reason = finishReason(r.stopReason(), stoppedHere[0]);
            events.add(new Done(reason, r.tokens().length));
            return reason.equals("cancelled") ? Outcome.CANCELLED : Outcome.COMPLETED;
        } catch (RuntimeException | Error e) {
            events.add(new Failed(new ApiException(500, "server_error", null, null,
                    "generation failed: " + e.getMessage())));
            return Outcome.FAILED;
        }
    }

    private String finishReason(GenerationResult.StopReason reason, boolean stoppedHere) {
        if (cancelled) {
            return "cancelled";
        }
        if (stoppedHere) {
            return "stop";
        }
        return switch (reason) {
            case EOS, LISTENER, CANCELLED -> "stop";
            case MAX_TOKENS, CONTEXT_FULL -> "length";
        };
    }
}

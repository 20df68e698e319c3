package org.flatquant.eval;

import java.util.List;
import java.util.Objects;

/**
 * One task item as lm-evaluation-harness turns it into requests.
 *
 * @param task the task
 * @param index the item's position in the task file, from 0 (lm-eval's {@code doc_id})
 * @param requests the scored (context, continuation) pairs: one per choice, or one for LAMBADA
 * @param gold the index of the correct request (0 for LAMBADA)
 * @param choices lm-eval's {@code doc_to_choice} strings, whose lengths normalize {@code acc_norm} (the contexts
 *     for WinoGrande, the target for LAMBADA); one per request
 */
public record TaskItem(Task task, int index, List<Request> requests, int gold, List<String> choices) {
    /** Validates and copies the lists. */
    public TaskItem {
        Objects.requireNonNull(task, "task");
        requests = List.copyOf(requests);
        choices = List.copyOf(choices);
        if (requests.isEmpty() || requests.size() != choices.size()) {
            throw new IllegalArgumentException(task.id() + " item " + index + ": " + requests.size()
                    + " requests for " + choices.size() + " choices");
        }
        if (gold < 0 || gold >= requests.size()) {
            throw new IllegalArgumentException(task.id() + " item " + index + ": gold " + gold + " is not one of "
                    + requests.size() + " choices");
        }
    }

    /**
     * A log-likelihood request: the continuation is scored after the context.
     *
     * @param context the conditioning text (not empty)
     * @param continuation the scored text, with its leading delimiter (usually one space)
     */
    public record Request(String context, String continuation) {
        /** Checks the strings. */
        public Request {
            Objects.requireNonNull(context, "context");
            Objects.requireNonNull(continuation, "continuation");
            if (context.isEmpty()) {
                throw new IllegalArgumentException("a request's context is empty");
            }
        }
    }
}

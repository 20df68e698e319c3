package org.flatquant.eval;

import java.util.Locale;

/**
 * The zero-shot tasks, named and scored as lm-evaluation-harness names and scores them.
 *
 * <p>Multiple-choice tasks score each choice by the log-likelihood of {@code " " + choice} after the context and
 * report {@code acc} (the highest log-likelihood is the gold choice) and, where lm-eval defines it,
 * {@code acc_norm} (the same after dividing each log-likelihood by the choice's length in characters). LAMBADA
 * scores one continuation, the last word, and reports {@code acc} (every token of the word is the model's greedy
 * choice) and {@code perplexity} ({@code exp(-mean log-likelihood)}).
 */
public enum Task {
    /** PIQA validation (1838 items): {@code "Question: {goal}\nAnswer:"}, two solutions. */
    PIQA("piqa", true),
    /** ARC-Easy test (2376 items): {@code "Question: {question}\nAnswer:"}, the answer texts. */
    ARC_EASY("arc_easy", true),
    /** ARC-Challenge test (1172 items), like ARC-Easy. */
    ARC_CHALLENGE("arc_challenge", true),
    /** HellaSwag validation (10042 items): the preprocessed context, four endings. */
    HELLASWAG("hellaswag", true),
    /** WinoGrande dev (1267 items), partial scoring: two contexts, one shared continuation. */
    WINOGRANDE("winogrande", false),
    /** LAMBADA, the OpenAI version of the test set (5153 items): the last word after the passage. */
    LAMBADA_OPENAI("lambada_openai", false);

    private final String id;
    private final boolean accNorm;

    Task(String id, boolean accNorm) {
        this.id = id;
        this.accNorm = accNorm;
    }

    /**
     * The lm-evaluation-harness task name.
     *
     * @return e.g. {@code "arc_easy"}
     */
    public String id() {
        return id;
    }

    /**
     * Whether lm-eval reports {@code acc_norm} for this task.
     *
     * @return true for PIQA, ARC and HellaSwag
     */
    public boolean hasAccNorm() {
        return accNorm;
    }

    /**
     * Whether items offer choices ({@code multiple_choice} in lm-eval) rather than one scored continuation.
     *
     * @return false for LAMBADA only
     */
    public boolean isMultipleChoice() {
        return this != LAMBADA_OPENAI;
    }

    /**
     * The task of an lm-eval name.
     *
     * @param id e.g. {@code "hellaswag"}; case does not matter
     * @return the task
     * @throws IllegalArgumentException for an unknown name, listing the known ones
     */
    public static Task byId(String id) {
        String want = id.trim().toLowerCase(Locale.ROOT);
        for (Task t : values()) {
            if (t.id.equals(want)) {
                return t;
            }
        }
        StringBuilder known = new StringBuilder();
        for (Task t : values()) {
            known.append(known.isEmpty() ? "" : ", ").append(t.id);
        }
        throw new IllegalArgumentException("unknown task '" + id + "' (known: " + known + ")");
    }
}

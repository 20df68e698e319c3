package org.flatquant.eval;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.flatquant.eval.TaskItem.Request;

/**
 * lm-evaluation-harness's zero-shot task definitions (its YAML {@code doc_to_text}, {@code doc_to_choice},
 * {@code doc_to_target}, {@code process_docs} and {@code target_delimiter}), applied to documents that carry the
 * fields of the upstream Hugging Face datasets. The documents come from {@link TaskData}.
 *
 * <p>Multiple-choice requests are {@code (context, " " + choice)}: the target delimiter is one space. WinoGrande
 * puts its choices in the context instead ({@code (sentence[:blank] + option, " " + rest)}). LAMBADA is a plain
 * log-likelihood request without a delimiter: the target already starts with its space.
 */
final class TaskRequests {
    private static final String DELIMITER = " ";
    // Python's re "." stops only at "\n"; Java's stops at every line terminator unless UNIX_LINES is set.
    private static final Pattern BRACKETED = Pattern.compile("\\[.*?\\]", Pattern.UNIX_LINES);

    private TaskRequests() {
    }

    /** A PIQA document: {@code goal}, {@code sol1}, {@code sol2}, {@code label}. */
    record PiqaDoc(String goal, String sol1, String sol2, int label) {
    }

    /** An ARC document: {@code question}, {@code choices.text}, and the index of {@code answerKey}. */
    record ArcDoc(String question, List<String> choices, int gold) {
    }

    /** A HellaSwag document before lm-eval's {@code process_docs}. */
    record HellaSwagDoc(String activityLabel, String ctxA, String ctxB, List<String> endings, int label) {
    }

    /** A WinoGrande document: the sentence with one {@code _}, the two options, the answer "1" or "2". */
    record WinograndeDoc(String sentence, String option1, String option2, String answer) {
    }

    /** A LAMBADA document: the passage, whose last space-separated word is the target. */
    record LambadaDoc(String text) {
    }

    static TaskItem piqa(int index, PiqaDoc d) {
        String context = "Question: " + d.goal() + "\nAnswer:";
        return choiceItem(Task.PIQA, index, context, List.of(d.sol1(), d.sol2()), d.label());
    }

    static TaskItem arc(Task task, int index, ArcDoc d) {
        String context = "Question: " + d.question() + "\nAnswer:";
        return choiceItem(task, index, context, d.choices(), d.gold());
    }

    /**
     * lm-eval's HellaSwag {@code process_docs}: the query is {@code activity_label + ": " + ctx_a + " " +
     * ctx_b.capitalize()} and it and every ending go through {@link #hellaswagPreprocess}.
     */
    static TaskItem hellaswag(int index, HellaSwagDoc d) {
        String query = hellaswagPreprocess(d.activityLabel() + ": " + d.ctxA() + " " + PyText.capitalize(d.ctxB()));
        List<String> choices = new ArrayList<>();
        for (String e : d.endings()) {
            choices.add(hellaswagPreprocess(e));
        }
        return choiceItem(Task.HELLASWAG, index, query, choices, d.label());
    }

    /**
     * lm-eval's HellaSwag {@code preprocess}, in its order: strip, {@code " [title]"} becomes {@code ". "}, every
     * bracketed span (shortest match) goes, and each double space becomes one. Because stripping comes first, a
     * text that starts with a bracketed tag keeps the space after it.
     */
    static String hellaswagPreprocess(String text) {
        String t = PyText.strip(text);
        t = t.replace(" [title]", ". ");
        t = BRACKETED.matcher(t).replaceAll("");
        return t.replace("  ", " ");
    }

    /**
     * lm-eval's WinoGrande: the contexts are the sentence up to the blank followed by each option, the shared
     * continuation is {@code " " + sentence[blank + 1:].strip()}, the gold is {@code answer - 1}.
     */
    static TaskItem winogrande(int index, WinograndeDoc d) {
        int blank = d.sentence().indexOf('_');
        if (blank < 0) {
            throw new IllegalArgumentException("winogrande item " + index + " has no blank: " + d.sentence());
        }
        String target = PyText.strip(d.sentence().substring(blank + 1));
        String prefix = d.sentence().substring(0, blank);
        List<String> contexts = List.of(prefix + d.option1(), prefix + d.option2());
        int gold = switch (d.answer()) {
            case "1" -> 0;
            case "2" -> 1;
            default -> throw new IllegalArgumentException("winogrande item " + index + ": answer '" + d.answer()
                    + "' is neither 1 nor 2");
        };
        List<Request> requests = new ArrayList<>();
        for (String c : contexts) {
            requests.add(new Request(c, DELIMITER + target));
        }
        return new TaskItem(Task.WINOGRANDE, index, requests, gold, contexts);
    }

    /**
     * lm-eval's {@code lambada_openai}: context {@code " ".join(text.split(" ")[:-1])}, target
     * {@code " " + text.split(" ")[-1]}: only spaces split, so a last "word" may hold newlines.
     */
    static TaskItem lambada(int index, LambadaDoc d) {
        List<String> words = PyText.split(d.text(), " ");
        String context = String.join(" ", words.subList(0, words.size() - 1));
        String target = " " + words.get(words.size() - 1);
        return new TaskItem(Task.LAMBADA_OPENAI, index, List.of(new Request(context, target)), 0, List.of(target));
    }

    private static TaskItem choiceItem(Task task, int index, String context, List<String> choices, int gold) {
        List<Request> requests = new ArrayList<>();
        for (String c : choices) {
            requests.add(new Request(context, DELIMITER + c));
        }
        return new TaskItem(task, index, requests, gold, choices);
    }
}

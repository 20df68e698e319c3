package org.flatquant.eval;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.flatquant.eval.TaskRequests.ArcDoc;
import org.flatquant.eval.TaskRequests.HellaSwagDoc;
import org.flatquant.eval.TaskRequests.LambadaDoc;
import org.flatquant.eval.TaskRequests.PiqaDoc;
import org.flatquant.eval.TaskRequests.WinograndeDoc;

/**
 * Reads the task files of {@code data/tasks/} and maps each item to the document lm-evaluation-harness would read
 * from the upstream dataset, then to its requests ({@link TaskRequests}). The mapping is the one
 * {@code tools/goldens/lm_eval_goldens.py} feeds to lm-eval; {@code data/tasks/README.md} describes the files and
 * where they differ from the upstream datasets.
 */
public final class TaskData {
    /** The 19 wikiHow categories HellaSwag uses as activity labels; the others are ActivityNet activities. */
    static final Set<String> WIKIHOW_LABELS = Set.of(
            "Cars & Other Vehicles", "Computers and Electronics", "Education and Communications", "Family Life",
            "Finance and Business", "Food and Entertaining", "Health", "Holidays and Traditions", "Home and Garden",
            "Home,Categories", "Personal Care and Style", "Pets and Animals", "Philosophy and Religion",
            "Relationships", "Sports and Fitness", "Travel", "Uncategorized", "Work World", "Youth");
    // The end of the last whole sentence before an ActivityNet ctx_b: . ! or ?, an optional closing quote, a space.
    private static final Pattern SENTENCE_END = Pattern.compile("[.!?][\"']? ");

    private TaskData() {
    }

    /**
     * The task folder: {@code <flatquant.data.dir>/tasks} when that system property is set, else
     * {@code data/tasks} under the working directory.
     *
     * @return the folder (it may not exist)
     */
    public static Path defaultDir() {
        return Path.of(System.getProperty("flatquant.data.dir", "data")).resolve("tasks");
    }

    /**
     * The files a task reads, relative to the task folder.
     *
     * @param task the task
     * @return one or two relative paths
     */
    public static List<String> files(Task task) {
        return switch (task) {
            case PIQA -> List.of("piqa/valid.jsonl", "piqa/valid-labels.lst");
            case ARC_EASY -> List.of("arc_easy/arc_easy.llmfoundry.jsonl");
            case ARC_CHALLENGE -> List.of("arc_challenge/arc_challenge.llmfoundry.jsonl");
            case HELLASWAG -> List.of("hellaswag/hellaswag_val_full.txt");
            case WINOGRANDE -> List.of("winogrande/winogrande.llmfoundry.jsonl");
            case LAMBADA_OPENAI -> List.of("lambada_openai/lambada_openai.llmfoundry.jsonl");
        };
    }

    /**
     * Loads the first {@code limit} items of a task, as lm-eval's {@code --limit} takes them.
     *
     * @param task the task
     * @param dir the task folder (see {@link #defaultDir()})
     * @param limit items to take; 0 or less for all
     * @return the items in file order
     * @throws UncheckedIOException when a file is missing or unreadable
     * @throws IllegalArgumentException when a file is malformed (with the file and line)
     */
    public static List<TaskItem> load(Task task, Path dir, int limit) {
        int max = limit <= 0 ? Integer.MAX_VALUE : limit;
        List<String> f = files(task);
        return switch (task) {
            case PIQA -> piqa(dir.resolve(f.get(0)), dir.resolve(f.get(1)), max);
            case ARC_EASY, ARC_CHALLENGE -> arc(task, dir.resolve(f.get(0)), max);
            case HELLASWAG -> hellaswag(dir.resolve(f.get(0)), max);
            case WINOGRANDE -> winogrande(dir.resolve(f.get(0)), max);
            case LAMBADA_OPENAI -> lambada(dir.resolve(f.get(0)), max);
        };
    }

    // ---- PIQA: the original valid.jsonl with its labels file, line by line ----------------------------------------

    private static List<TaskItem> piqa(Path jsonl, Path labelsFile, int max) {
        List<Map<String, Object>> rows = jsonLines(jsonl, max);
        String[] labels = read(labelsFile).strip().split("\\s+");
        if (labels.length < rows.size()) {
            throw new IllegalArgumentException(labelsFile + " has " + labels.length + " labels for " + rows.size()
                    + " items");
        }
        List<TaskItem> items = new ArrayList<>();
        for (int i = 0; i < rows.size(); i++) {
            Map<String, Object> r = rows.get(i);
            int label = parseLabel(labels[i], 2, labelsFile, i);
            items.add(TaskRequests.piqa(i, new PiqaDoc(str(r, "goal", jsonl, i), str(r, "sol1", jsonl, i),
                    str(r, "sol2", jsonl, i), label)));
        }
        return items;
    }

    // ---- ARC: llm-foundry's {"query": "Question: Q", "choices": [...], "gold": k} -------------------------------

    private static List<TaskItem> arc(Task task, Path jsonl, int max) {
        List<TaskItem> items = new ArrayList<>();
        List<Map<String, Object>> rows = jsonLines(jsonl, max);
        for (int i = 0; i < rows.size(); i++) {
            Map<String, Object> r = rows.get(i);
            String query = str(r, "query", jsonl, i);
            // llm-foundry wrote the query as "Question: " + question; lm-eval adds that prefix itself.
            if (!query.startsWith("Question: ")) {
                throw new IllegalArgumentException(where(jsonl, i) + "query does not start with 'Question: '");
            }
            List<String> choices = strings(r, "choices", jsonl, i);
            int gold = integer(r, "gold", jsonl, i);
            if (gold < 0 || gold >= choices.size()) {
                throw new IllegalArgumentException(where(jsonl, i) + "gold " + gold + " outside the choices");
            }
            items.add(TaskRequests.arc(task, i, new ArcDoc(query.substring("Question: ".length()), choices, gold)));
        }
        return items;
    }

    // ---- HellaSwag: llama.cpp's text format, 6 lines per item ------------------------------------------------------

    private static List<TaskItem> hellaswag(Path file, int max) {
        List<String> lines = PyText.split(read(file), "\n");
        int n = lines.size() / 6;
        List<TaskItem> items = new ArrayList<>();
        for (int i = 0; i < n && i < max; i++) {
            String ctxLine = lines.get(6 * i);
            int label = parseLabel(lines.get(6 * i + 1), 4, file, 6 * i + 1);
            String[] parts = hellaswagSplit(ctxLine);
            if (parts == null) {
                throw new IllegalArgumentException(file + " line " + (6 * i + 1) + ": no 'label: ' prefix");
            }
            List<String> endings = lines.subList(6 * i + 2, 6 * i + 6);
            items.add(TaskRequests.hellaswag(i, new HellaSwagDoc(parts[0], parts[1], parts[2], endings, label)));
        }
        return items;
    }

    /**
     * Rebuilds {@code (activity_label, ctx_a, ctx_b)} from a context line {@code activity_label + ": " + ctx}. The
     * file keeps {@code ctx = ctx_a + " " + ctx_b} whole, but lm-eval capitalizes {@code ctx_b}. WikiHow items have
     * an empty {@code ctx_b}; an ActivityNet item's {@code ctx_b} is the incomplete sentence at the end, after the
     * last sentence end.
     *
     * @return the three parts, or null when the line has no {@code ": "}
     */
    static String[] hellaswagSplit(String line) {
        int colon = line.indexOf(": ");
        if (colon < 0) {
            return null;
        }
        String label = line.substring(0, colon);
        String body = line.substring(colon + 2);
        if (WIKIHOW_LABELS.contains(label)) {
            return new String[] {label, body, ""};
        }
        int k = 0;
        Matcher m = SENTENCE_END.matcher(body);
        while (m.find()) {
            k = m.end();
        }
        // The space that ends the sentence is the one lm-eval puts back between ctx_a and ctx_b.
        return new String[] {label, k > 0 ? body.substring(0, k - 1) : "", body.substring(k)};
    }

    // ---- WinoGrande: llm-foundry's {"context_options": [a, b], "continuation": c, "gold": k} ------------------

    private static List<TaskItem> winogrande(Path jsonl, int max) {
        List<TaskItem> items = new ArrayList<>();
        List<Map<String, Object>> rows = jsonLines(jsonl, max);
        for (int i = 0; i < rows.size(); i++) {
            Map<String, Object> r = rows.get(i);
            List<String> options = strings(r, "context_options", jsonl, i);
            if (options.size() != 2) {
                throw new IllegalArgumentException(where(jsonl, i) + options.size() + " context options, not 2");
            }
            String a = options.get(0);
            String b = options.get(1);
            int gold = integer(r, "gold", jsonl, i);
            if (gold != 0 && gold != 1) {
                throw new IllegalArgumentException(where(jsonl, i) + "gold " + gold + " is neither 0 nor 1");
            }
            int n = 0;
            while (n < Math.min(a.length(), b.length()) && a.charAt(n) == b.charAt(n)) {
                n++;
            }
            // The blank starts after the last space the options share; the contexts are rebuilt exactly either way.
            int cut = a.lastIndexOf(' ', n - 1) + 1;
            String sentence = a.substring(0, cut) + "_ " + str(r, "continuation", jsonl, i);
            items.add(TaskRequests.winogrande(i, new WinograndeDoc(sentence, a.substring(cut), b.substring(cut),
                    Integer.toString(gold + 1))));
        }
        return items;
    }

    // ---- LAMBADA: llm-foundry's {"context": ..., "continuation": last word}; text = context + " " + word -------

    private static List<TaskItem> lambada(Path jsonl, int max) {
        List<TaskItem> items = new ArrayList<>();
        List<Map<String, Object>> rows = jsonLines(jsonl, max);
        for (int i = 0; i < rows.size(); i++) {
            Map<String, Object> r = rows.get(i);
            String text = str(r, "context", jsonl, i) + " " + str(r, "continuation", jsonl, i);
            items.add(TaskRequests.lambada(i, new LambadaDoc(text)));
        }
        return items;
    }

    // ---- file helpers -----------------------------------------------------------------------------------------------

    static String read(Path file) {
        try {
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new UncheckedIOException("task file not found: " + file
                    + " (the task folder is -Dflatquant.data.dir/tasks, by default ./data/tasks)", e);
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException("task file is not valid UTF-8: " + file, e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read task file " + file + ": " + e.getMessage(), e);
        }
    }

    private static List<Map<String, Object>> jsonLines(Path file, int max) {
        List<Map<String, Object>> rows = new ArrayList<>();
        List<String> lines = PyText.split(read(file), "\n");
        for (int i = 0; i < lines.size() && rows.size() < max; i++) {
            String line = lines.get(i);
            if (line.isBlank()) {
                continue;
            }
            try {
                rows.add(JsonReader.parseObject(line));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(file + " line " + (i + 1) + ": " + e.getMessage(), e);
            }
        }
        return rows;
    }

    private static String where(Path file, int item) {
        return file.getFileName() + " item " + item + ": ";
    }

    private static String str(Map<String, Object> r, String key, Path file, int item) {
        if (r.get(key) instanceof String s) {
            return s;
        }
        throw new IllegalArgumentException(where(file, item) + "'" + key + "' is not a string");
    }

    private static int integer(Map<String, Object> r, String key, Path file, int item) {
        if (r.get(key) instanceof Long v && v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
            return v.intValue();
        }
        throw new IllegalArgumentException(where(file, item) + "'" + key + "' is not an integer");
    }

    private static List<String> strings(Map<String, Object> r, String key, Path file, int item) {
        if (r.get(key) instanceof List<?> list) {
            List<String> out = new ArrayList<>();
            for (Object o : list) {
                if (!(o instanceof String s)) {
                    throw new IllegalArgumentException(where(file, item) + "'" + key + "' holds a non-string");
                }
                out.add(s);
            }
            return out;
        }
        throw new IllegalArgumentException(where(file, item) + "'" + key + "' is not a list");
    }

    private static int parseLabel(String s, int n, Path file, int line) {
        try {
            int v = Integer.parseInt(s.strip());
            if (v >= 0 && v < n) {
                return v;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException(file + " line " + (line + 1) + ": label '" + s + "' is not 0.." + (n - 1));
    }
}

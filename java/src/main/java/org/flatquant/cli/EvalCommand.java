package org.flatquant.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.ModelInfo;
import org.flatquant.cli.Args.UsageException;
import org.flatquant.eval.Evaluator;
import org.flatquant.eval.ItemResult;
import org.flatquant.eval.Task;
import org.flatquant.eval.TaskData;
import org.flatquant.eval.TaskItem;
import org.flatquant.eval.TaskResult;

/**
 * {@code flatquant eval}: zero-shot accuracy on PIQA, ARC-Easy, ARC-Challenge, HellaSwag, WinoGrande and LAMBADA
 * (OpenAI), scored as lm-evaluation-harness scores them. Results go to stdout (a table, or one JSON object with
 * {@code --json}); progress goes to stderr.
 */
final class EvalCommand {
    static final String USAGE = """
            usage: flatquant eval (--model M.gguf [--quant Q] [--method M] [--artifact A] [--seed S]
                                  | --quantized Q.gguf) --tasks LIST [--limit N] [--json]
                                  [--samples FILE] [--data DIR] [--bos|--no-bos] [--quiet]
                                  [--threads N] [--device D]

            Zero-shot accuracy, scored as lm-evaluation-harness scores it (log-likelihood of each choice
            after the context; acc_norm divides by the choice's length in characters; LAMBADA's acc is
            whether the last word is the greedy continuation).

              --tasks LIST      comma-separated: piqa, arc_easy, arc_challenge, hellaswag, winogrande,
                                lambada_openai, or all
              --limit N         the first N items of each task (default: every item)
              --json            one JSON object on stdout instead of the table
              --samples FILE    also write every item's log-likelihoods as JSON lines to FILE
              --data DIR        the task folder (default: <data dir>/tasks, the data dir being
                                -Dflatquant.data.dir or ./data)
              --bos, --no-bos   put a BOS token before every context, or never; by default the
                                tokenizer decides, as lm-eval does (SmolLM2: no BOS)
              --quiet           no progress bar
              --threads N       CPU worker threads (0 = one per core, the default)
              --device D        cpu (default), cuda or cuda:N
              --quant Q         evaluate the fake-quantized model: w<bits>a<bits>[kv<bits>], e.g. w4a4kv4
              --method M        rtn (the default with --quant), rotate, or flatquant (needs --artifact)
              --artifact A      a calibration artifact of the model (flatquant calibrate); --quant and
                                --method then default to the artifact's
              --seed S          the rotations of --method rotate without --artifact (default 0)
              --quantized Q     evaluate a quantized-model file (flatquant quantize) instead of --model;
                                it takes none of --quant, --method, --artifact, --seed

            The table shows acc and acc_norm with lm-eval's standard errors, and two averages over the
            tasks: of acc, and of acc_norm where the task has it and acc otherwise (QuaRot/FlatQuant's
            convention). --json adds "quant", "method", "weight_quantizer" and "artifact" (null for the
            full-precision model), "quantized_file", "eval_engine" and "session_engine".""";

    private final PrintStream out;
    private final PrintStream err;

    EvalCommand(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    void run(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Set<String> withValue = new java.util.HashSet<>(
                Set.of("--threads", "--device", "--tasks", "--limit", "--data", "--samples"));
        withValue.addAll(QuantFlags.options("--seed"));
        Args a = Args.parse("eval", args, 1, withValue, Set.of("--json", "--bos", "--no-bos", "--quiet"));
        QuantFlags quant = QuantFlags.parse(a, "--seed");
        if (a.has("--bos") && a.has("--no-bos")) {
            throw new UsageException("--bos and --no-bos exclude each other");
        }
        Bos bos = a.has("--bos") ? Bos.YES : a.has("--no-bos") ? Bos.NO : Bos.DEFAULT;
        List<Task> tasks = parseTasks(a.required("--tasks"));
        int limit = a.intValue("--limit", 0, 1, Integer.MAX_VALUE);
        Path dataDir = a.has("--data") ? Path.of(a.required("--data")) : TaskData.defaultDir();
        Path modelPath = quant.existingPath();

        // Every file is read before the model loads: a missing or malformed task file fails fast.
        List<List<TaskItem>> items = new ArrayList<>();
        for (Task t : tasks) {
            try {
                items.add(TaskData.load(t, dataDir, limit));
            } catch (IllegalArgumentException e) {
                throw new Main.CliException(e.getMessage());
            }
        }

        long t0 = System.nanoTime();
        List<TaskResult> results = new ArrayList<>();
        String sha;
        ModelInfo info;
        try (Engine engine = Main.engine(a); Model model = quant.load(engine, null)) {
            sha = model.fingerprint();
            info = model.info();
            Evaluator evaluator = new Evaluator(model, bos);
            ProgressBar bar = a.has("--quiet") ? null : new ProgressBar(err);
            try {
                for (int i = 0; i < tasks.size(); i++) {
                    try {
                        results.add(evaluator.evaluate(tasks.get(i), items.get(i), bar));
                    } catch (IllegalArgumentException e) {
                        throw new Main.CliException(tasks.get(i).id() + ": " + e.getMessage());
                    }
                }
            } finally {
                if (bar != null) {
                    bar.finish();
                }
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        if (a.has("--samples")) {
            writeSamples(Path.of(a.required("--samples")), results);
        }
        if (a.has("--json")) {
            out.println(json(modelPath, sha, quant.describe(new Json(), info), limit, bos, results, seconds));
        } else {
            printTable(modelPath, sha, quant.describe(info), limit, bos, results, seconds);
        }
    }

    private static List<Task> parseTasks(String list) {
        Set<Task> tasks = new LinkedHashSet<>();
        for (String name : list.split(",")) {
            if (name.isBlank()) {
                continue;
            }
            if (name.strip().equals("all")) {
                tasks.addAll(List.of(Task.values()));
                continue;
            }
            try {
                tasks.add(Task.byId(name));
            } catch (IllegalArgumentException e) {
                throw new UsageException(e.getMessage());
            }
        }
        if (tasks.isEmpty()) {
            throw new UsageException("--tasks names no task");
        }
        return List.copyOf(tasks);
    }

    /** Mean of acc over the tasks, and of acc_norm where defined else acc. */
    static double[] averages(List<TaskResult> results) {
        double acc = 0;
        double best = 0;
        for (TaskResult r : results) {
            acc += r.acc();
            best += r.task().hasAccNorm() ? r.accNorm() : r.acc();
        }
        int n = results.size();
        return new double[] {acc / n, best / n};
    }

    private void printTable(Path model, String sha, String quant, int limit, Bos bos, List<TaskResult> results,
                            double seconds) {
        out.printf("model     %s (sha256 %s)%n", model, sha.substring(0, 16));
        out.printf("quant     %s%n", quant);
        out.printf("items     %s per task, zero-shot, BOS %s%n", limit > 0 ? "first " + limit : "all",
                bos == Bos.DEFAULT ? "as the tokenizer adds it" : bos == Bos.YES ? "always" : "never");
        out.println();
        out.printf("%-15s %6s  %7s %8s  %8s %8s  %s%n", "task", "n", "acc", "stderr", "acc_norm", "stderr",
                "other");
        for (TaskResult r : results) {
            String norm = r.task().hasAccNorm() ? String.format("%8.4f %8.4f", r.accNorm(), r.accNormStderr())
                    : String.format("%8s %8s", "-", "-");
            String other = Double.isNaN(r.perplexity()) ? "" : String.format("perplexity %.3f", r.perplexity());
            out.println(String.format("%-15s %6d  %7.4f %8.4f  %s  %s", r.task().id(), r.n(), r.acc(),
                    r.accStderr(), norm, other).stripTrailing());
        }
        double[] avg = averages(results);
        out.printf("%-15s %6s  %7.4f %8s  %8.4f %8s  %s%n", "avg (" + results.size() + " tasks)", "", avg[0], "",
                avg[1], "", "(acc_norm column: acc_norm where defined, else acc)");
        out.println();
        long requests = 0;
        long tokens = 0;
        for (TaskResult r : results) {
            requests += r.requests();
            tokens += r.tokens();
        }
        out.printf("time      %.1f s for %,d requests (%,d tokens), %.1f tokens/s%n", seconds, requests, tokens,
                tokens / Math.max(seconds, 1e-9));
    }

    private static String json(Path model, String sha, Json quant, int limit, Bos bos, List<TaskResult> results,
                               double seconds) {
        StringBuilder sb = new StringBuilder("{");
        String q = quant.toString();
        sb.append("\"model\": ").append(Json.quote(model.toString()))
                .append(", \"sha256\": ").append(Json.quote(sha))
                .append(", ").append(q, 1, q.length() - 1)
                .append(", \"limit\": ").append(limit > 0 ? Integer.toString(limit) : "null")
                .append(", \"bos\": ").append(Json.quote(bos.name().toLowerCase()))
                .append(", \"tasks\": [");
        for (int i = 0; i < results.size(); i++) {
            TaskResult r = results.get(i);
            Json j = new Json()
                    .put("task", r.task().id())
                    .put("n", r.n())
                    .put("acc", r.acc())
                    .put("acc_stderr", r.accStderr())
                    .put("acc_norm", r.accNorm())
                    .put("acc_norm_stderr", r.accNormStderr())
                    .put("perplexity", r.perplexity())
                    .put("requests", r.requests())
                    .put("tokens", r.tokens())
                    .put("seconds", r.seconds());
            sb.append(i == 0 ? "" : ", ").append(j);
        }
        double[] avg = averages(results);
        sb.append("], \"average_acc\": ").append(num(avg[0]))
                .append(", \"average_acc_norm_else_acc\": ").append(num(avg[1]))
                .append(", \"seconds\": ").append(num(seconds))
                .append('}');
        return sb.toString();
    }

    /** A JSON number; JSON has no NaN or infinity, so those become null (as {@link Json} writes them). */
    private static String num(double v) {
        return Double.isFinite(v) ? Double.toString(v) : "null";
    }

    private static void writeSamples(Path file, List<TaskResult> results) {
        try (Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
            for (TaskResult r : results) {
                for (ItemResult it : r.items()) {
                    StringBuilder lp = new StringBuilder("[");
                    StringBuilder gr = new StringBuilder("[");
                    for (int k = 0; k < it.logprobs().length; k++) {
                        lp.append(k == 0 ? "" : ", ").append(num(it.logprobs()[k]));
                        gr.append(k == 0 ? "" : ", ").append(it.greedy()[k]);
                    }
                    Json j = new Json()
                            .put("task", r.task().id())
                            .put("doc_id", it.index())
                            .put("gold", it.gold())
                            .put("acc", it.acc())
                            .put("acc_norm", it.accNorm());
                    String s = j.toString();
                    w.write(s.substring(0, s.length() - 1) + ", \"logprobs\": " + lp + "], \"is_greedy\": " + gr
                            + "]}\n");
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }
}

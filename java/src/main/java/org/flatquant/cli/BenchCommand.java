package org.flatquant.cli;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import org.flatquant.BatchSession;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.ModelInfo;
import org.flatquant.Session;

/**
 * {@code flatquant bench}: the speed of a model's sessions. Each repeat resets one session, times the prefill of a
 * prompt (the first tokens of the WikiText-2 test text) in one decode call, then times greedy decoding one token per
 * call. It reports prefill tokens/s and decode ms/token as the median and the 90th percentile over the repeats. With
 * {@code --batch N} a {@link BatchSession} of N sequences runs the same workload for N copies of the prompt together,
 * and the tokens/s count the tokens of every sequence. A measurement tool, not a test: nothing is compared with a
 * reference.
 */
final class BenchCommand {
    static final String USAGE = """
            usage: flatquant bench --model M.gguf [--quant Q] [--method M] [--artifact A] [--seed S] [options]
                   flatquant bench --quantized Q.gguf [options]

            Session speed. Every repeat resets one session, feeds the first --prompt-tokens tokens of the
            WikiText-2 test text in one call (prefill, timed), then decodes --gen-tokens tokens greedily,
            one call per token (decode, timed; end-of-sequence tokens do not stop it). Reported: prefill
            tokens/s and decode ms/token, median and p90 over the repeats (p90 is the slow end: the 90th
            percentile of the times), with the session engine, the device and the model.

            options:
              --prompt-tokens N   prompt length in tokens (default 512)
              --gen-tokens N      greedily decoded tokens (default 128); prompt plus these must fit the
                                  model's context
              --repeat N          timed repeats (default 3)
              --warmup N          untimed repeats first (default 1)
              --batch N           decode N copies of the prompt together in one batch session
                                  (1 to 256): every call advances all N sequences, so a decode
                                  step gives one token to each (ms/token is the time of a step,
                                  the latency each sequence sees) and tokens/s count the tokens
                                  of all N sequences
              --json              one JSON object on stdout (with the time of every repeat)
              --quiet             no line per repeat on stderr
              --threads N         CPU worker threads (0 = one per core, the default)
              --device D          cpu (default), cuda or cuda:N
              QUANT (--quant, --method, --artifact, --seed) or --quantized as for the other commands""";

    private static final Set<String> FLAGS = Set.of("--json", "--quiet");

    private final PrintStream out;
    private final PrintStream err;

    BenchCommand(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    /** Times of one repeat; {@code generated[i]} holds the greedy tokens of sequence i. */
    private record Run(double prefillSeconds, double decodeSeconds, int[][] generated) {
    }

    void run(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Set<String> withValue = new HashSet<>(QuantFlags.options("--seed"));
        withValue.addAll(Set.of("--threads", "--device", "--prompt-tokens", "--gen-tokens", "--repeat",
                "--warmup", "--batch"));
        Args a = Args.parse("bench", args, 1, withValue, FLAGS);
        QuantFlags quant = QuantFlags.parse(a, "--seed");
        int promptTokens = a.intValue("--prompt-tokens", 512, 1, Integer.MAX_VALUE);
        int genTokens = a.intValue("--gen-tokens", 128, 1, Integer.MAX_VALUE);
        int repeats = a.intValue("--repeat", 3, 1, 1_000_000);
        int warmups = a.intValue("--warmup", 1, 0, 1_000_000);
        // 0: a plain Session; N >= 1: a BatchSession of N sequences (--batch 1 measures the batch path alone).
        int batch = a.has("--batch") ? a.intValue("--batch", 1, 1, 256) : 0;
        int sequences = Math.max(batch, 1);
        Path path = quant.existingPath();
        String text = Texts.forEvaluation("wikitext2-test").content();

        try (Engine engine = Main.engine(a); Model model = quant.load(engine, null)) {
            ModelInfo info = model.info();
            long needed = (long) promptTokens + genTokens;
            if (needed > info.contextLength()) {
                throw new Main.CliException("--prompt-tokens " + promptTokens + " plus --gen-tokens " + genTokens
                        + " exceed the model's context length of " + info.contextLength() + " tokens");
            }
            int[] prompt = prompt(model, text, promptTokens);
            Run[] runs = new Run[repeats];
            try (Session session = batch == 0 ? model.newSession((int) needed) : null;
                 BatchSession batchSession = batch == 0 ? null : model.newBatchSession(batch, (int) needed)) {
                for (int r = -warmups; r < repeats; r++) {
                    Run run = session != null ? once(session, prompt, genTokens)
                            : once(batchSession, prompt, genTokens);
                    if (r >= 0) {
                        runs[r] = run;
                    }
                    if (!a.has("--quiet")) {
                        err.printf("%s %d/%d: prefill %.1f tokens/s, decode %.3f ms/token%n",
                                r < 0 ? "warm-up" : "repeat", r < 0 ? r + warmups + 1 : r + 1,
                                r < 0 ? warmups : repeats, (double) sequences * promptTokens / run.prefillSeconds,
                                1e3 * run.decodeSeconds / genTokens);
                        err.flush();
                    }
                }
            }
            report(a.has("--json"), quant, path, engine, info, batch, promptTokens, genTokens, warmups, runs);
        }
    }

    /** The first {@code n} tokens of the text, tokenizing only as much of it as needed. */
    private static int[] prompt(Model model, String text, int n) {
        // A prefix's tokens equal the whole text's except near the cut, so a margin past n is tokenized and dropped.
        final int margin = 16;
        long chars = 8L * (n + margin);
        while (true) {
            boolean whole = chars >= text.length();
            int[] ids = model.tokenizer().encode(whole ? text : text.substring(0, (int) chars), Bos.DEFAULT);
            if (ids.length >= n + margin || whole && ids.length >= n) {
                return Arrays.copyOf(ids, n);
            }
            if (whole) {
                throw new Main.CliException("the WikiText-2 test text has only " + ids.length + " tokens; "
                        + "--prompt-tokens " + n + " is more");
            }
            chars *= 2;
        }
    }

    /** One repeat from an empty context: the prefill, then genTokens greedy steps. */
    private static Run once(Session session, int[] prompt, int genTokens) {
        session.reset();
        int[] generated = new int[genTokens];
        long t0 = System.nanoTime();
        float[] logits = session.decode(prompt);
        long t1 = System.nanoTime();
        for (int i = 0; i < genTokens; i++) {
            generated[i] = argmax(logits);
            logits = session.decode(new int[] {generated[i]});
        }
        long t2 = System.nanoTime();
        return new Run((t1 - t0) / 1e9, (t2 - t1) / 1e9, new int[][] {generated});
    }

    /**
     * One repeat of a batch session from empty contexts: every sequence is prefilled with the same prompt in one call,
     * then genTokens greedy steps, each sequence following its own argmax.
     */
    private static Run once(BatchSession session, int[] prompt, int genTokens) {
        int n = session.sequences();
        session.reset();
        int[][] prompts = new int[n][];
        Arrays.fill(prompts, prompt);
        int[][] generated = new int[n][genTokens];
        int[][] step = new int[n][1];
        long t0 = System.nanoTime();
        float[][] logits = session.decode(prompts);
        long t1 = System.nanoTime();
        for (int i = 0; i < genTokens; i++) {
            for (int s = 0; s < n; s++) {
                generated[s][i] = argmax(logits[s]);
                step[s][0] = generated[s][i];
            }
            logits = session.decode(step);
        }
        long t2 = System.nanoTime();
        return new Run((t1 - t0) / 1e9, (t2 - t1) / 1e9, generated);
    }

    /** The greedy choice: the largest logit, the lowest id on ties (as the native greedy sampler picks). */
    static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }

    /** The median: the middle value, or the mean of the two middle ones. */
    static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        int n = v.length;
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }

    /** The 90th percentile by nearest rank: the smallest value with at least 90% of the values at or below it. */
    static double p90(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        int rank = (int) Math.ceil(0.9 * v.length);
        return v[Math.max(rank, 1) - 1];
    }

    /**
     * Prints the statistics. {@code batch} is 0 for a plain session; tokens/s count the tokens of all
     * {@code max(batch, 1)} sequences, ms/token is per decode step.
     */
    private void report(boolean json, QuantFlags quant, Path path, Engine engine, ModelInfo info, int batch,
                        int promptTokens, int genTokens, int warmups, Run[] runs) {
        int n = runs.length;
        int sequences = Math.max(batch, 1);
        double[] prefill = new double[n];
        double[] decode = new double[n];
        boolean same = true;
        for (int r = 0; r < n; r++) {
            prefill[r] = runs[r].prefillSeconds;
            decode[r] = runs[r].decodeSeconds;
            same &= Arrays.deepEquals(runs[r].generated, runs[0].generated);
        }
        // Every sequence saw the same prompt, so greedy decoding should agree across the batch.
        boolean sameAcross = true;
        for (int[] g : runs[0].generated) {
            sameAcross &= Arrays.equals(g, runs[0].generated[0]);
        }
        double prefillMedian = median(prefill);
        double prefillP90 = p90(prefill);
        double prefillTokens = (double) sequences * promptTokens;
        double msPerTokenMedian = 1e3 * median(decode) / genTokens;
        double msPerTokenP90 = 1e3 * p90(decode) / genTokens;
        String device = engine.isCuda() ? "cuda:" + engine.device() : "cpu";
        if (json) {
            double[] prefillMs = Arrays.stream(prefill).map(s -> 1e3 * s).toArray();
            double[] decodeMsPerToken = Arrays.stream(decode).map(s -> 1e3 * s / genTokens).toArray();
            Json j = quant.describe(new Json()
                    .put("model", path.toString())
                    .put("device", device)
                    .put("threads", engine.threads()), info)
                    .put("batch", sequences)
                    .put("prompt_tokens", promptTokens)
                    .put("gen_tokens", genTokens)
                    .put("repeat", n)
                    .put("warmup", warmups)
                    .put("prefill_tokens_per_s_median", prefillTokens / prefillMedian)
                    .put("prefill_tokens_per_s_p90", prefillTokens / prefillP90)
                    .put("prefill_ms_median", 1e3 * prefillMedian)
                    .put("prefill_ms_p90", 1e3 * prefillP90)
                    .put("decode_ms_per_token_median", msPerTokenMedian)
                    .put("decode_ms_per_token_p90", msPerTokenP90)
                    .put("decode_tokens_per_s_median", sequences * 1e3 / msPerTokenMedian)
                    .putNumbers("prefill_ms", prefillMs)
                    .putNumbers("decode_ms_per_token", decodeMsPerToken)
                    .put("same_tokens_every_repeat", same);
            if (batch > 0) {
                j.put("same_tokens_every_sequence", sameAcross);
            }
            out.println(j);
            return;
        }
        out.printf("model       %s%n", path);
        out.printf("quant       %s%n", quant.describe(info));
        out.printf("engine      session engine %s on %s (%s)%n",
                info.sessionEngine().isEmpty() ? "none" : info.sessionEngine(), device, engine);
        if (batch > 0) {
            out.printf("batch       %d sequences of the same prompt in one batch session%n", batch);
        }
        out.printf("workload    %d prompt tokens (wikitext2-test), then %d greedy tokens%s; %d repeat(s) after %d "
                + "warm-up(s)%n", promptTokens, genTokens, batch > 0 ? " per sequence" : "", n, warmups);
        out.printf("prefill     %.1f tokens/s median, %.1f tokens/s p90 (%.2f ms, %.2f ms)%s%n",
                prefillTokens / prefillMedian, prefillTokens / prefillP90, 1e3 * prefillMedian, 1e3 * prefillP90,
                batch > 0 ? ", all sequences" : "");
        out.printf("decode      %.3f ms/token median, %.3f ms/token p90 (%.1f tokens/s median%s)%n", msPerTokenMedian,
                msPerTokenP90, sequences * 1e3 / msPerTokenMedian,
                batch > 0 ? " over " + batch + " sequences, one token each per step" : "");
        if (!same) {
            out.println("note        the greedy tokens differed between repeats");
        }
        if (!sameAcross) {
            out.println("note        the greedy tokens differed between the sequences of the batch");
        }
    }
}

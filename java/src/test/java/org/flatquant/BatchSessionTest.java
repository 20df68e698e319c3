package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.flatquant.cli.Main;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Batch sessions on the CPU (stories260K). The CPU runs a batch's sequences one after another through the same
 * code as a single session, so a batch must reproduce separate sessions bit for bit; whole-sequence logits (no KV
 * cache, a different computation) bound both within float tolerance.
 */
class BatchSessionTest {
    static final int PROMPT_TOKENS = 10;
    static final int STEPS = 8;

    static Path path;
    static Engine engine;
    static Model model;
    static int vocab;
    /** Three different prompts of PROMPT_TOKENS tokens each. */
    static int[][] prompts;

    @BeforeAll
    static void load() {
        path = TestSupport.storiesModel(); // skips the class when absent
        engine = Engine.cpu(2);
        model = Model.load(engine, path);
        vocab = model.info().vocabSize();
        String[] texts = {"Once upon a time, there was a little girl named Lily who liked flowers.",
                          "The big dog ran to the park and barked at a red ball in the grass.",
                          "Tom and his mom baked a cake for the birthday party of his sister."};
        prompts = new int[texts.length][];
        for (int i = 0; i < texts.length; i++) {
            int[] ids = model.tokenizer().encode(texts[i], Bos.YES);
            assertTrue(ids.length >= PROMPT_TOKENS, texts[i] + " has only " + ids.length + " tokens");
            prompts[i] = Arrays.copyOf(ids, PROMPT_TOKENS);
        }
        assertFalse(Arrays.equals(prompts[0], prompts[1]) || Arrays.equals(prompts[1], prompts[2])
                || Arrays.equals(prompts[0], prompts[2]), "the prompts must differ");
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

    /** Argmax with the lowest id on ties: the header's greedy rule. */
    static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }

    static int[] append(int[] a, int x) {
        int[] b = Arrays.copyOf(a, a.length + 1);
        b[a.length] = x;
        return b;
    }

    /** Max |a - b| over max |b|: a scale-free distance between logits rows. */
    static double relativeDistance(float[] a, float[] b) {
        double diff = 0;
        double scale = 0;
        for (int i = 0; i < a.length; i++) {
            diff = Math.max(diff, Math.abs((double) a[i] - b[i]));
            scale = Math.max(scale, Math.abs((double) b[i]));
        }
        return diff / scale;
    }

    @Test
    void batchEqualsSeparateSessionsStepByStep() {
        int n = prompts.length;
        Session[] singles = new Session[n];
        try (BatchSession batch = model.newBatchSession(n, 64)) {
            for (int s = 0; s < n; s++) {
                singles[s] = model.newSession(64);
            }
            assertEquals(n, batch.sequences());
            assertEquals(64, batch.contextLength());
            assertEquals(0, batch.position());

            float[][] logits = batch.decode(prompts);
            assertEquals(n, logits.length);
            int[][] seqs = new int[n][];
            for (int s = 0; s < n; s++) {
                assertEquals(vocab, logits[s].length);
                assertArrayEquals(singles[s].decode(prompts[s]), logits[s], "prefill logits of sequence " + s);
                seqs[s] = prompts[s];
            }
            // Rows mixed up or shared would go unnoticed if the prompts gave equal logits.
            assertTrue(relativeDistance(logits[0], logits[1]) > 1e-3 && relativeDistance(logits[1], logits[2]) > 1e-3);
            assertEquals(PROMPT_TOKENS, batch.position());

            for (int step = 0; step < STEPS; step++) {
                int[][] next = new int[n][1];
                for (int s = 0; s < n; s++) {
                    next[s][0] = argmax(logits[s]);
                    seqs[s] = append(seqs[s], next[s][0]);
                }
                logits = batch.decode(next);
                for (int s = 0; s < n; s++) {
                    float[] single = singles[s].decode(next[s]);
                    assertArrayEquals(single, logits[s], "logits of sequence " + s + " at step " + step);
                }
            }
            assertEquals(PROMPT_TOKENS + STEPS, batch.position());

            // Each sequence's last logits against whole-sequence evaluation without a KV cache.
            for (int s = 0; s < n; s++) {
                float[] all = model.logits(seqs[s]);
                float[] last = Arrays.copyOfRange(all, (seqs[s].length - 1) * vocab, seqs[s].length * vocab);
                double d = relativeDistance(logits[s], last);
                assertTrue(d < 1e-4, "sequence " + s + " differs from whole-sequence logits by " + d);
            }
        } finally {
            for (Session s : singles) {
                if (s != null) {
                    s.close();
                }
            }
        }
    }

    @Test
    void appendThenDecodeAndResetStartOver() {
        try (BatchSession batch = model.newBatchSession(prompts.length, 32)) {
            float[][] first = batch.decode(prompts);
            batch.reset();
            assertEquals(0, batch.position());
            assertArrayEquals(first, batch.decode(prompts));
            // append keeps the tokens without logits: the next step matches a session fed the same way.
            batch.append(new int[][] {{5}, {6}, {7}});
            assertEquals(PROMPT_TOKENS + 1, batch.position());
            float[][] after = batch.decode(new int[][] {{8}, {9}, {10}});
            try (Session single = model.newSession(32)) {
                single.decode(prompts[2]);
                single.append(new int[] {7});
                assertArrayEquals(single.decode(new int[] {10}), after[2]);
            }
        }
    }

    @Test
    void oneSequenceBatchEqualsASession() {
        try (BatchSession batch = model.newBatchSession(1, 32); Session single = model.newSession(32)) {
            assertArrayEquals(single.decode(prompts[1]), batch.decode(new int[][] {prompts[1]})[0]);
            assertArrayEquals(single.decode(new int[] {42}), batch.decode(new int[][] {{42}})[0]);
        }
    }

    @Test
    void raggedAndMisshapedRowsAreRefusedBeforeTheCall() {
        try (BatchSession batch = model.newBatchSession(3, 16)) {
            batch.decode(new int[][] {{1, 2}, {3, 4}, {5, 6}});
            InvalidArgumentException ragged = assertThrows(InvalidArgumentException.class,
                    () -> batch.decode(new int[][] {{1, 2}, {3}, {5, 6}}));
            assertTrue(ragged.getMessage().contains("tokens[1] has 1"), ragged.getMessage());
            assertThrows(InvalidArgumentException.class, () -> batch.append(new int[][] {{1}, {3}, {5, 6}}));
            assertThrows(InvalidArgumentException.class, () -> batch.decode(new int[][] {{1}, {2}}));
            assertThrows(InvalidArgumentException.class, () -> batch.decode(new int[][] {{1}, {2}, {3}, {4}}));
            assertThrows(InvalidArgumentException.class, () -> batch.decode(new int[][] {{}, {}, {}}));
            assertThrows(NullPointerException.class, () -> batch.decode(null));
            assertThrows(NullPointerException.class, () -> batch.decode(new int[][] {{1}, null, {3}}));
            assertEquals(2, batch.position());

            // Refused natively, all or nothing: a bad id in one row, a context too short for the rows.
            assertThrows(InvalidArgumentException.class, () -> batch.decode(new int[][] {{1}, {vocab}, {3}}));
            assertThrows(InvalidArgumentException.class, () -> batch.decode(new int[][] {{1}, {-1}, {3}}));
            int[] fifteen = new int[15];
            Arrays.fill(fifteen, 1);
            assertThrows(InvalidArgumentException.class, () -> batch.decode(new int[][] {fifteen, fifteen, fifteen}));
            assertEquals(2, batch.position());
            // The session is unchanged: the next step equals that of a fresh session with the same tokens.
            float[][] next = batch.decode(new int[][] {{7}, {8}, {9}});
            try (Session single = model.newSession(16)) {
                single.decode(new int[] {5, 6});
                assertArrayEquals(single.decode(new int[] {9}), next[2]);
            }
        }
    }

    @Test
    void sequenceCountAndContextOutOfRangeAreRefused() {
        assertThrows(InvalidArgumentException.class, () -> model.newBatchSession(0, 16));
        assertThrows(InvalidArgumentException.class, () -> model.newBatchSession(-1, 16));
        assertThrows(InvalidArgumentException.class, () -> model.newBatchSession(257, 16));
        assertThrows(InvalidArgumentException.class, () -> model.newBatchSession(2, 0));
        assertThrows(InvalidArgumentException.class,
                () -> model.newBatchSession(2, model.info().contextLength() + 1));
        // The largest batch works, and its rows stay apart.
        try (BatchSession batch = model.newBatchSession(256, 4)) {
            int[][] tokens = new int[256][1];
            for (int s = 0; s < 256; s++) {
                tokens[s][0] = s % vocab;
            }
            float[][] logits = batch.decode(tokens);
            assertEquals(256, logits.length);
            try (Session single = model.newSession(4)) {
                assertArrayEquals(single.decode(new int[] {255 % vocab}), logits[255]);
            }
        }
    }

    @Test
    @SuppressWarnings("try") // closing the model inside try-with-resources is what is tested
    void closedSessionIsRefusedAndReleasesTheModel() {
        try (Model own = Model.load(engine, path)) {
            BatchSession batch = own.newBatchSession(2, 8);
            IllegalStateException modelBusy = assertThrows(IllegalStateException.class, own::close);
            assertTrue(modelBusy.getMessage().contains("session"), modelBusy.getMessage());
            batch.close();
            batch.close(); // idempotent
            assertThrows(IllegalStateException.class, () -> batch.decode(new int[][] {{1}, {2}}));
            assertThrows(IllegalStateException.class, () -> batch.append(new int[][] {{1}, {2}}));
            assertThrows(IllegalStateException.class, batch::position);
            assertThrows(IllegalStateException.class, batch::reset);
            own.close(); // the session no longer holds the model
            assertThrows(IllegalStateException.class, () -> own.newBatchSession(2, 8));
        }
    }

    @Test
    void secondCallerGetsBusy() throws Exception {
        // A prefill long enough (64 x 192 tokens) that the other thread is certain to find it running.
        int n = 64;
        int len = 192;
        try (BatchSession batch = model.newBatchSession(n, len)) {
            int[][] tokens = new int[n][len];
            for (int s = 0; s < n; s++) {
                for (int t = 0; t < len; t++) {
                    tokens[s][t] = 1 + (s * 31 + t * 7) % (vocab - 1);
                }
            }
            CountDownLatch started = new CountDownLatch(1);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread worker = new Thread(() -> {
                try {
                    started.countDown();
                    // The main thread's short calls may hold the session when this one starts: it is refused
                    // then too (BUSY works both ways), and tries again until its prefill runs.
                    while (true) {
                        try {
                            batch.append(tokens);
                            break;
                        } catch (BusyException e) {
                            Thread.onSpinWait();
                        }
                    }
                } catch (Throwable e) {
                    failure.set(e);
                }
            });
            worker.start();
            started.await();
            int busy = 0;
            while (worker.isAlive()) {
                try {
                    batch.position();
                } catch (BusyException e) {
                    busy++;
                }
                Thread.sleep(1);  // leaves the session free most of the time, so the worker's prefill starts at once
            }
            worker.join();
            assertEquals(null, failure.get());
            assertTrue(busy > 0, "no call was refused while the prefill ran");
            assertEquals(len, batch.position());
        }
    }

    /** The value of a top-level field of a flat JSON object. */
    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\": (\"[^\"]*\"|[^,}]+)").matcher(json);
        assertTrue(m.find(), name + " missing in " + json);
        String v = m.group(1);
        return v.startsWith("\"") ? v.substring(1, v.length() - 1) : v;
    }

    record Cli(int status, String out, String err) {
    }

    static Cli cli(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Cli(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static double positive(String json, String name) {
        double v = Double.parseDouble(field(json, name));
        assertTrue(Double.isFinite(v) && v > 0, name + " = " + v + " in " + json);
        return v;
    }

    @Test
    void benchBatchPrintsSaneNumbers() {
        Cli json = cli("bench", "--model", path.toString(), "--batch", "4", "--prompt-tokens", "24", "--gen-tokens",
                "6", "--repeat", "3", "--warmup", "1", "--threads", "2", "--json");
        assertEquals(0, json.status(), json.err());
        String j = json.out().strip();
        assertTrue(j.startsWith("{") && j.endsWith("}") && j.lines().count() == 1, j);
        assertEquals("4", field(j, "batch"));
        assertEquals("24", field(j, "prompt_tokens"));
        assertEquals("6", field(j, "gen_tokens"));
        double prefillTps = positive(j, "prefill_tokens_per_s_median");
        double prefillMs = positive(j, "prefill_ms_median");
        double msPerStep = positive(j, "decode_ms_per_token_median");
        assertTrue(positive(j, "decode_ms_per_token_p90") >= msPerStep, j);
        assertTrue(positive(j, "prefill_tokens_per_s_p90") <= prefillTps, j);
        // Throughput counts the tokens of all four sequences.
        assertEquals(4 * 24 / (prefillMs / 1e3), prefillTps, 1e-9 * prefillTps);
        assertEquals(4 * 1e3 / msPerStep, positive(j, "decode_tokens_per_s_median"), 1e-9 * (4 * 1e3 / msPerStep));
        // Four copies of one prompt decode the same greedy tokens, every repeat.
        assertEquals("true", field(j, "same_tokens_every_sequence"));
        assertEquals("true", field(j, "same_tokens_every_repeat"));
        assertEquals(4, json.err().lines().filter(l -> l.contains("ms/token")).count(), json.err());

        Cli text = cli("bench", "--model", path.toString(), "--batch", "4", "--prompt-tokens", "16", "--gen-tokens",
                "4", "--repeat", "1", "--warmup", "0", "--quiet");
        assertEquals(0, text.status(), text.err());
        assertEquals("", text.err());
        assertTrue(text.out().contains("4 sequences"), text.out());
        Matcher decode = Pattern.compile("decode +([0-9.]+) ms/token median.*\\(([0-9.]+) tokens/s median over 4 "
                + "sequences").matcher(text.out());
        assertTrue(decode.find(), text.out());
        assertTrue(Double.parseDouble(decode.group(1)) > 0 && Double.parseDouble(decode.group(2)) > 0, text.out());

        assertEquals(2, cli("bench", "--model", path.toString(), "--batch", "0").status());
        assertEquals(2, cli("bench", "--model", path.toString(), "--batch", "257").status());
    }
}

package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * SmolLM2-135M-Instruct (Q4_1, dequantized to FP32) against lm-evaluation-harness 0.4.13 on the first items of
 * every task: golden/lm_eval_smollm2.json holds what lm-eval itself built and returned (request strings, the
 * token ids its HFLM fed, the summed log-likelihood and is_greedy of a float32 transformers model read from the
 * same GGUF file, the per-item metrics and their aggregates); tools/goldens/lm_eval_goldens.py made it.
 *
 * <p>Per task: the request strings must be identical, the token ids identical, each log-likelihood within 1e-3,
 * is_greedy, acc and acc_norm of every item identical, and so the aggregates. The model file comes from
 * {@code -Dflatquant.smollm2.gguf} (the build passes the default model); without it the test is skipped.
 */
class LmEvalGoldenTest {
    private static final double TOLERANCE = 1e-3;
    private static Map<String, Object> golden;
    private static Engine engine;
    private static Model model;

    private static String skipReason;

    @BeforeAll
    static void load() throws IOException {
        String prop = System.getProperty("flatquant.smollm2.gguf", "");
        Path path = prop.isBlank() ? null : Path.of(prop);
        if (path == null) {
            skipReason = "SmolLM2-135M-Instruct.Q4_1.gguf not given (-Dflatquant.smollm2.gguf=<file>; "
                    + "./flatquant test passes the default model)";
            return;
        }
        if (!Files.isRegularFile(path)) {
            skipReason = "SmolLM2 model file not found: " + path;
            return;
        }
        TestSupport.requireNative();
        try (InputStream in = LmEvalGoldenTest.class.getResourceAsStream("/golden/lm_eval_smollm2.json")) {
            assertTrue(in != null, "golden/lm_eval_smollm2.json is missing from the test resources");
            golden = JsonReader.parseObject(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
        engine = Engine.cpu(0);
        model = Model.load(engine, path);
        String sha = model.fingerprint();
        if (!sha.equals(golden.get("model_sha256"))) {
            skipReason = "-Dflatquant.smollm2.gguf is not the file the goldens were made from (sha256 " + sha + ")";
        }
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

    @SuppressWarnings("unchecked")
    private static <T> T get(Object map, String key) {
        return (T) ((Map<String, Object>) map).get(key);
    }

    private static int[] ids(Object list) {
        return ((List<?>) list).stream().mapToInt(o -> ((Long) o).intValue()).toArray();
    }

    private static double num(Object o) {
        return ((Number) o).doubleValue();
    }

    @ParameterizedTest
    @EnumSource(Task.class)
    void matchesLmEval(Task task) {
        assumeTrue(skipReason == null, skipReason);
        Map<String, Object> g = get(golden.get("tasks"), task.id());
        List<Object> gItems = get(g, "items");
        int n = ((Long) g.get("n")).intValue();
        List<TaskItem> items = TaskData.load(task, TestSupport.dataDir().resolve("tasks"), n);
        assertEquals(n, items.size());

        Evaluator ev = new Evaluator(model, Bos.DEFAULT);
        List<List<RequestEncoder.Encoded>> enc = ev.encode(items);
        for (int i = 0; i < n; i++) {
            List<Object> reqs = get(gItems.get(i), "requests");
            TaskItem item = items.get(i);
            assertEquals(reqs.size(), item.requests().size(), task.id() + " item " + i);
            for (int j = 0; j < reqs.size(); j++) {
                String where = task.id() + " item " + i + " request " + j;
                Object r = reqs.get(j);
                assertEquals(get(r, "context"), item.requests().get(j).context(), where);
                assertEquals(get(r, "continuation"), item.requests().get(j).continuation(), where);
                assertArrayEquals(ids(get(r, "context_tokens")), enc.get(i).get(j).context(), where);
                assertArrayEquals(ids(get(r, "continuation_tokens")), enc.get(i).get(j).continuation(), where);
            }
        }

        // The tokens are lm-eval's, so the evaluator scores exactly the sequences lm-eval scored.
        TaskResult result = ev.evaluate(task, items, null);
        for (int i = 0; i < n; i++) {
            Object gi = gItems.get(i);
            List<Object> reqs = get(gi, "requests");
            ItemResult it = result.items().get(i);
            for (int j = 0; j < reqs.size(); j++) {
                String where = task.id() + " item " + i + " request " + j;
                assertEquals(num(get(reqs.get(j), "logprob")), it.logprobs()[j], TOLERANCE, where);
                assertEquals(get(reqs.get(j), "is_greedy"), it.greedy()[j], where);
            }
            Map<String, Object> m = get(gi, "metrics");
            assertEquals(num(m.get("acc")), it.acc(), task.id() + " item " + i + " acc");
            if (task.hasAccNorm()) {
                assertEquals(num(m.get("acc_norm")), it.accNorm(), task.id() + " item " + i + " acc_norm");
            }
        }
        Map<String, Object> agg = get(g, "metrics");
        assertEquals(num(agg.get("acc")), result.acc(), 1e-12, task.id() + " acc");
        assertEquals(num(agg.get("acc_stderr")), result.accStderr(), 1e-12, task.id() + " acc_stderr");
        if (task.hasAccNorm()) {
            assertEquals(num(agg.get("acc_norm")), result.accNorm(), 1e-12, task.id() + " acc_norm");
            assertEquals(num(agg.get("acc_norm_stderr")), result.accNormStderr(), 1e-12, task.id());
        }
        if (task == Task.LAMBADA_OPENAI) {
            double ppl = num(agg.get("perplexity"));
            assertEquals(ppl, result.perplexity(), 1e-3 * ppl, "lambada perplexity");
        }
    }
}

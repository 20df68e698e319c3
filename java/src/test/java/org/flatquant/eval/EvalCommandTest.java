package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.flatquant.TestSupport;
import org.flatquant.cli.Main;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code flatquant eval} through the command line's entry point, on stories260K. */
class EvalCommandTest {
    private String stdout;
    private String stderr;

    private int run(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        int status = Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8),
                new PrintStream(e, true, StandardCharsets.UTF_8));
        stdout = o.toString(StandardCharsets.UTF_8);
        stderr = e.toString(StandardCharsets.UTF_8);
        return status;
    }

    private static String tasksDir() {
        return TestSupport.dataDir().resolve("tasks").toString();
    }

    @Test
    @SuppressWarnings("unchecked")
    void jsonAndSamples(@TempDir Path dir) throws Exception {
        String model = TestSupport.storiesModel().toString();
        Path samples = dir.resolve("samples.jsonl");
        assertEquals(0, run("eval", "--model", model, "--tasks", "piqa,lambada_openai", "--limit", "3", "--json",
                "--data", tasksDir(), "--samples", samples.toString(), "--threads", "2"), stderr);
        Map<String, Object> j = JsonReader.parseObject(stdout.strip());
        assertEquals(3L, j.get("limit"));
        List<Object> tasks = (List<Object>) j.get("tasks");
        assertEquals(2, tasks.size());
        Map<String, Object> piqa = (Map<String, Object>) tasks.get(0);
        Map<String, Object> lambada = (Map<String, Object>) tasks.get(1);
        assertEquals("piqa", piqa.get("task"));
        assertEquals(3L, piqa.get("n"));
        assertEquals(6L, piqa.get("requests"));
        assertTrue(lambada.get("perplexity") instanceof Double);
        assertEquals(null, lambada.get("acc_norm"));
        double accAvg = (((Number) piqa.get("acc")).doubleValue() + ((Number) lambada.get("acc")).doubleValue()) / 2;
        assertEquals(accAvg, ((Number) j.get("average_acc")).doubleValue(), 1e-12);
        // Progress went to stderr.
        assertTrue(stderr.contains("piqa") && stderr.contains("lambada_openai"), stderr);

        List<String> lines = Files.readAllLines(samples);
        assertEquals(6, lines.size());
        Map<String, Object> first = JsonReader.parseObject(lines.get(0));
        assertEquals("piqa", first.get("task"));
        assertEquals(0L, first.get("doc_id"));
        assertEquals(2, ((List<Object>) first.get("logprobs")).size());
    }

    @Test
    void table() {
        String model = TestSupport.storiesModel().toString();
        assertEquals(0, run("eval", "--model", model, "--tasks", "winogrande,arc_easy", "--limit", "2", "--quiet",
                "--data", tasksDir()), stderr);
        assertTrue(stdout.contains("winogrande") && stdout.contains("arc_easy") && stdout.contains("avg (2 tasks)"),
                stdout);
        assertTrue(stdout.contains("acc_norm"), stdout);
        assertEquals("", stderr);
    }

    @Test
    void usageErrors() {
        assertEquals(0, run("eval", "--help"));
        assertTrue(stdout.contains("--tasks LIST"), stdout);
        assertEquals(2, run("eval", "--model", "m.gguf", "--tasks", "mmlu"));
        assertTrue(stderr.contains("unknown task 'mmlu'"), stderr);
        assertEquals(2, run("eval", "--model", "m.gguf"));
        assertEquals(2, run("eval", "--model", "m.gguf", "--tasks", "piqa", "--limit", "0"));
        assertEquals(2, run("eval", "--model", "m.gguf", "--tasks", "piqa", "--bos", "--no-bos"));
        assertEquals(1, run("eval", "--model", "/nonexistent/m.gguf", "--tasks", "piqa"));
        assertTrue(stderr.contains("model file not found"), stderr);
    }

    @Test
    void missingTaskFolder(@TempDir Path dir) {
        String model = TestSupport.storiesModel().toString();
        assertEquals(1, run("eval", "--model", model, "--tasks", "hellaswag", "--data", dir.toString()));
        assertTrue(stderr.contains("task file not found"), stderr);
    }
}

package org.flatquant.cli;

import static org.flatquant.cli.MainTest.field;
import static org.flatquant.cli.MainTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.flatquant.TestSupport;
import org.flatquant.cli.MainTest.Result;
import org.flatquant.serve.OpenAiServer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code quantize}, {@code --quantized} on the other commands, and {@code bench}, in-process on stories260K. The
 * quantized-model file is made once, with rotate and seed 3; on the CPU {@code --quantized} runs the same
 * computation as {@code --model ... --method rotate --seed 3}, so their numbers must be identical.
 */
class QuantizedCliTest {
    @TempDir
    static Path shared;
    static Path model;
    static Path quantized;
    static String quantizeJson;

    @TempDir
    Path tmp;

    @BeforeAll
    static void quantize() {
        model = TestSupport.storiesModel();
        quantized = shared.resolve("stories.w4a4kv4.gguf");
        Result r = run("quantize", "--model", model.toString(), "--method", "rotate", "--seed", "3", "--out",
                quantized.toString(), "--threads", "2", "--json");
        assertEquals(0, r.status(), r.err());
        quantizeJson = r.out().strip();
    }

    static List<Path> files(Path dir) throws IOException {
        return QuantCliTest.files(dir);
    }

    /** A positive, finite number from a JSON field. */
    static double positive(String json, String name) {
        double v = Double.parseDouble(field(json, name));
        assertTrue(Double.isFinite(v) && v > 0, name + " = " + v + " in " + json);
        return v;
    }

    @Test
    void quantizeWritesTheFileAndSaysWhat() throws IOException {
        assertTrue(Files.isRegularFile(quantized));
        assertTrue(quantizeJson.startsWith("{") && quantizeJson.endsWith("}"), quantizeJson);
        assertEquals(quantized.toAbsolutePath().toString(), field(quantizeJson, "out"));
        assertEquals(Files.size(quantized), Long.parseLong(field(quantizeJson, "out_bytes")));
        assertEquals("w4a4kv4", field(quantizeJson, "quant"));
        assertEquals("rotate", field(quantizeJson, "method"));
        assertEquals("rtn", field(quantizeJson, "weight_quantizer"));
        assertEquals("null", field(quantizeJson, "artifact"));
        // The summary form, with the progress bar on stderr; nothing else is left in the directory.
        Path other = tmp.resolve("q.gguf");
        Result text = run("quantize", "--model", model.toString(), "--quant", "w4a8kv8", "--out", other.toString());
        assertEquals(0, text.status(), text.err());
        assertTrue(text.out().contains("w4a8kv8 rtn, rtn weights"), text.out());
        assertTrue(text.err().contains("save"), text.err());
        assertEquals(List.of(other), files(tmp));
    }

    @Test
    void pplOfTheFileEqualsPplOfTheInMemoryModel() {
        String[] common = {"--text", "wikitext2-test", "--seqlen", "64", "--max-chunks", "3", "--json", "--quiet"};
        Result file = run(concat(new String[] {"ppl", "--quantized", quantized.toString()}, common));
        Result memory = run(concat(new String[] {"ppl", "--model", model.toString(), "--method", "rotate", "--seed",
                "3"}, common));
        assertEquals(0, file.status(), file.err());
        assertEquals(0, memory.status(), memory.err());
        assertEquals(field(memory.out(), "ppl"), field(file.out(), "ppl"));     // the same digits: exactly equal
        assertEquals(field(memory.out(), "nll_sum"), field(file.out(), "nll_sum"));
        assertEquals(quantized.toString(), field(file.out(), "model"));
        assertEquals("true", field(file.out(), "quantized_file"));
        assertEquals("false", field(memory.out(), "quantized_file"));
        for (Result r : List.of(file, memory)) {
            assertEquals("w4a4kv4", field(r.out(), "quant"));
            assertEquals("rotate", field(r.out(), "method"));
            assertEquals("cpu", field(r.out(), "eval_engine"));
            assertEquals("cpu", field(r.out(), "session_engine"));
        }
        Result human = run("ppl", "--quantized", quantized.toString(), "--text", "wikitext2-test", "--seqlen", "64",
                "--max-chunks", "1", "--quiet");
        assertEquals(0, human.status(), human.err());
        assertTrue(human.out().contains("quantized-model file"), human.out());
    }

    @Test
    void infoReportsTheFileAndTheEngines() {
        Result r = run("info", "--quantized", quantized.toString(), "--json");
        assertEquals(0, r.status(), r.err());
        String json = r.out().strip();
        assertEquals("true", field(json, "quantized_file"));
        assertEquals("cpu", field(json, "eval_engine"));
        assertEquals("cpu", field(json, "session_engine"));
        assertEquals("w4a4kv4", field(json, "quant"));
        assertEquals("rotate", field(json, "method"));
        assertEquals("rtn", field(json, "weight_quantizer"));
        assertEquals("null", field(json, "artifact"));
        assertEquals("512", field(json, "n_vocab"));
        assertEquals("5", field(json, "n_layer"));
        Result fp = run("info", "--model", model.toString(), "--json");
        assertEquals("false", field(fp.out(), "quantized_file"));
        assertEquals("cpu", field(fp.out(), "eval_engine"));
        Result human = run("info", "--quantized", quantized.toString());
        assertEquals(0, human.status(), human.err());
        assertTrue(human.out().contains("evaluation cpu, sessions cpu"), human.out());
    }

    @Test
    void generateAndEvalRunTheFile() {
        Result file = run("generate", "--quantized", quantized.toString(), "--prompt", "Once upon a time",
                "--max-tokens", "12");
        Result memory = run("generate", "--model", model.toString(), "--method", "rotate", "--quant-seed", "3",
                "--prompt", "Once upon a time", "--max-tokens", "12");
        assertEquals(0, file.status(), file.err());
        assertEquals(memory.out(), file.out());
        Result eval = run("eval", "--quantized", quantized.toString(), "--tasks", "piqa", "--limit", "2", "--data",
                TestSupport.dataDir().resolve("tasks").toString(), "--json", "--quiet");
        assertEquals(0, eval.status(), eval.err());
        assertEquals("true", field(eval.out(), "quantized_file"));
        assertEquals("cpu", field(eval.out(), "eval_engine"));
        assertEquals("rotate", field(eval.out(), "method"));
    }

    @Test
    void serveLoadsTheFile() throws Exception {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        OpenAiServer server = ServeCommand.start(new String[] {"serve", "--quantized", quantized.toString(),
            "--port", "0"}, new PrintStream(err, true, StandardCharsets.UTF_8));
        try {
            HttpURLConnection c = (HttpURLConnection) server.baseUri().resolve("/v1/models").toURL().openConnection();
            assertEquals(200, c.getResponseCode());
            String body;
            try (InputStream in = c.getInputStream()) {
                body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            assertTrue(body.contains("stories.w4a4kv4"), body);
        } finally {
            server.close();
        }
    }

    @Test
    void benchPrintsSaneNumbers() {
        Result json = run("bench", "--quantized", quantized.toString(), "--prompt-tokens", "48", "--gen-tokens", "8",
                "--repeat", "3", "--warmup", "1", "--json");
        assertEquals(0, json.status(), json.err());
        String j = json.out().strip();
        assertTrue(j.startsWith("{") && j.endsWith("}") && j.lines().count() == 1, j);
        assertEquals("cpu", field(j, "device"));
        assertEquals("cpu", field(j, "session_engine"));
        assertEquals("true", field(j, "quantized_file"));
        assertEquals("48", field(j, "prompt_tokens"));
        assertEquals("8", field(j, "gen_tokens"));
        assertEquals("3", field(j, "repeat"));
        double tpsMedian = positive(j, "prefill_tokens_per_s_median");
        double tpsP90 = positive(j, "prefill_tokens_per_s_p90");
        double msMedian = positive(j, "decode_ms_per_token_median");
        double msP90 = positive(j, "decode_ms_per_token_p90");
        positive(j, "prefill_ms_median");
        // p90 is the slow end of the repeats.
        assertTrue(tpsP90 <= tpsMedian && msP90 >= msMedian, j);
        assertEquals(1e3 / msMedian, positive(j, "decode_tokens_per_s_median"), 1e-9 * (1e3 / msMedian));
        assertEquals(48 / tpsMedian * 1e3, positive(j, "prefill_ms_median"), 1e-9 * (48 / tpsMedian * 1e3));
        Matcher m = Pattern.compile("\"decode_ms_per_token\": \\[([^\\]]*)\\]").matcher(j);
        assertTrue(m.find(), j);
        assertEquals(3, m.group(1).split(",").length, j);
        assertEquals("true", field(j, "same_tokens_every_repeat"));
        // One progress line per repeat, warm-up included.
        assertEquals(4, json.err().lines().filter(l -> l.contains("ms/token")).count(), json.err());

        Result text = run("bench", "--model", model.toString(), "--prompt-tokens", "32", "--gen-tokens", "4",
                "--repeat", "1", "--warmup", "0", "--quiet");
        assertEquals(0, text.status(), text.err());
        assertEquals("", text.err());
        Matcher prefill = Pattern.compile("prefill +([0-9.]+) tokens/s median").matcher(text.out());
        Matcher decode = Pattern.compile("decode +([0-9.]+) ms/token median").matcher(text.out());
        assertTrue(prefill.find() && decode.find(), text.out());
        assertTrue(Double.parseDouble(prefill.group(1)) > 0 && Double.parseDouble(decode.group(1)) > 0, text.out());
        assertTrue(text.out().contains("session engine cpu on cpu"), text.out());
        assertTrue(text.out().contains("none (full precision)"), text.out());
    }

    @Test
    void benchStatistics() {
        assertEquals(2.0, BenchCommand.median(new double[] {3, 1, 2}), 0.0);
        assertEquals(2.5, BenchCommand.median(new double[] {4, 1, 3, 2}), 0.0);
        assertEquals(3.0, BenchCommand.p90(new double[] {3, 1, 2}), 0.0);           // rank ceil(2.7) = 3
        assertEquals(9.0, BenchCommand.p90(new double[] {10, 1, 2, 3, 4, 5, 6, 7, 8, 9}), 0.0); // rank 9
        assertEquals(7.0, BenchCommand.p90(new double[] {7}), 0.0);
        assertEquals(1, BenchCommand.argmax(new float[] {0, 2, 2, 1}));            // the lowest id on ties
    }

    @Test
    void usageErrors() throws IOException {
        String q = quantized.toString();
        String m = model.toString();
        for (String[] args : new String[][] {
            {"ppl", "--quantized", q, "--text", "wikitext2-test", "--artifact", "a.fq"},
            {"ppl", "--quantized", q, "--text", "wikitext2-test", "--method", "rotate"},
            {"info", "--quantized", q, "--quant", "w4a4kv4"},
            {"eval", "--quantized", q, "--tasks", "piqa", "--seed", "1"},
            {"generate", "--quantized", q, "--prompt", "x", "--quant-seed", "1"},
            {"bench", "--quantized", q, "--artifact", "a.fq"},
        }) {
            Result r = run(args);
            assertEquals(2, r.status(), String.join(" ", args) + ": " + r.err());
            assertTrue(r.err().startsWith("error: --quantized Q.gguf is already quantized; --"), r.err());
        }
        for (String[] args : new String[][] {
            {"info", "--quantized", q, "--model", m},
            {"bench", "--model", m, "--quantized", q},
            {"serve", "--quantized", q, "--model", m},
        }) {
            Result r = run(args);
            assertEquals(2, r.status(), String.join(" ", args) + ": " + r.err());
            assertTrue(r.err().startsWith("error: --quantized Q.gguf is the model to run; it cannot be combined "
                    + "with --model"), r.err());
        }
        Result neither = run("bench");
        assertEquals(2, neither.status());
        assertTrue(neither.err().startsWith("error: bench needs --model M.gguf or --quantized Q.gguf"), neither.err());
        Result noMethod = run("quantize", "--model", m, "--out", tmp.resolve("q.gguf").toString());
        assertEquals(2, noMethod.status());
        assertTrue(noMethod.err().startsWith("error: quantize needs --artifact A"), noMethod.err());
        assertEquals(2, run("quantize", "--quantized", q, "--out", tmp.resolve("q.gguf").toString()).status());
        assertEquals(2, run("quantize", "--model", m, "--method", "rotate").status());              // no --out
        assertEquals(2, run("quantize", "--model", m, "--method", "flatquant", "--out", "q.gguf").status());
        assertEquals(2, run("bench", "--model", m, "--repeat", "0").status());
        assertEquals(2, run("bench", "--model", m, "--gen-tokens", "-1").status());

        // Errors found before any work, and no file left behind.
        Result noDir = run("quantize", "--model", m, "--method", "rotate", "--out",
                tmp.resolve("none/q.gguf").toString());
        assertEquals(1, noDir.status());
        assertTrue(noDir.err().startsWith("error: the directory of --out does not exist"), noDir.err());
        Result missing = run("ppl", "--quantized", tmp.resolve("missing.gguf").toString(), "--text", "wikitext2-test");
        assertEquals(1, missing.status());
        assertTrue(missing.err().startsWith("error: quantized model file not found"), missing.err());
        Result w16 = run("quantize", "--model", m, "--quant", "w16a8kv8", "--out", tmp.resolve("w16.gguf").toString(),
                "--quiet");
        assertEquals(1, w16.status());
        assertTrue(w16.err().startsWith("error: "), w16.err());
        Result tooLong = run("bench", "--model", m, "--prompt-tokens", "2000", "--gen-tokens", "100", "--quiet");
        assertEquals(1, tooLong.status());
        assertTrue(tooLong.err().contains("exceed the model's context length of 2048 tokens"), tooLong.err());
        assertEquals(List.of(), files(tmp));
    }

    @Test
    void helpNamesTheNewCommands() {
        String usage = run("--help").out();
        assertTrue(usage.contains("quantize  --model M.gguf QUANT --out Q.gguf"), usage);
        assertTrue(usage.contains("bench     MODEL"), usage);
        assertTrue(usage.contains("--quantized Q.gguf"), usage);
        Result quantize = run("quantize", "--help");
        assertEquals(0, quantize.status());
        assertTrue(quantize.out().contains("usage: flatquant quantize"), quantize.out());
        Result bench = run("bench", "--help");
        assertEquals(0, bench.status());
        assertTrue(bench.out().contains("--prompt-tokens") && bench.out().contains("p90"), bench.out());
        assertTrue(run("serve", "--help").out().contains("--quantized Q.gguf"));
        assertTrue(run("eval", "--help").out().contains("--quantized Q"));
    }

    private static String[] concat(String[] a, String[] b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}

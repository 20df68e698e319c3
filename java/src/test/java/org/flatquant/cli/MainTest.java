package org.flatquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.GenerationOptions;
import org.flatquant.Model;
import org.flatquant.PerplexityOptions;
import org.flatquant.PerplexityResult;
import org.flatquant.Session;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command line run in-process: exit codes, messages without stack traces, JSON fields. */
class MainTest {
    @TempDir
    Path tmp;

    record Result(int status, String out, String err) {
    }

    static Result run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        Result r = new Result(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        assertFalse(r.err.contains("Exception") || r.err.contains("\tat "), "stack trace on stderr:\n" + r.err);
        return r;
    }

    /** The value of a top-level field of a flat JSON object (number, boolean or string without escapes). */
    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\": (\"[^\"]*\"|[^,}]+)").matcher(json);
        assertTrue(m.find(), name + " missing in " + json);
        String v = m.group(1);
        return v.startsWith("\"") ? v.substring(1, v.length() - 1) : v;
    }

    static String sha256(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
    }

    @Test
    void usageErrorsExitTwo() {
        Result none = run();
        assertEquals(2, none.status);
        assertTrue(none.err.contains("usage: flatquant"), none.err);
        assertEquals(2, run("frobnicate").status);
        assertEquals(2, run("info").status);                                  // no --model
        assertEquals(2, run("info", "--model").status);                       // no value
        assertEquals(2, run("info", "--model", "m.gguf", "--bogus").status);
        assertEquals(2, run("ppl", "--model", "m.gguf", "--text", "t.txt", "--max-chunks", "0").status);
        assertEquals(2, run("ppl", "--model", "m.gguf", "--text", "t.txt", "--seqlen", "0").status);
        assertEquals(2, run("ppl", "--model", "m.gguf", "--text", "t.txt", "--seqlen", "abc").status);
        assertEquals(2, run("ppl", "--model", "m.gguf", "--text", "t.txt", "--bos", "--no-bos").status);
        assertEquals(2, run("generate", "--model", "m.gguf", "--prompt", "x", "--temperature", "-1").status);
        assertEquals(2, run("generate", "--model", "m.gguf", "--prompt", "x", "--top-p", "0").status);
        Result maxChunks = run("ppl", "--model", "m.gguf", "--text", "t.txt", "--max-chunks", "0");
        assertTrue(maxChunks.err.startsWith("error: --max-chunks must be at least 1"), maxChunks.err);
    }

    @Test
    void helpExitsZero() {
        Result r = run("--help");
        assertEquals(0, r.status);
        assertTrue(r.out.contains("ppl") && r.out.contains("generate"));
    }

    @Test
    void runtimeErrorsExitOne() throws Exception {
        Result missing = run("info", "--model", tmp.resolve("missing.gguf").toString());
        assertEquals(1, missing.status);
        assertTrue(missing.err.startsWith("error: model file not found"), missing.err);

        Path model = TestSupport.storiesModel();
        Result noText = run("ppl", "--model", model.toString(), "--text", tmp.resolve("none.txt").toString());
        assertEquals(1, noText.status);
        assertTrue(noText.err.startsWith("error: text file not found"), noText.err);

        Path empty = Files.writeString(tmp.resolve("empty.txt"), "");
        Result emptyText = run("ppl", "--model", model.toString(), "--text", empty.toString());
        assertEquals(1, emptyText.status);
        assertTrue(emptyText.err.contains("empty"), emptyText.err);

        Path story = Files.writeString(tmp.resolve("story.txt"), TestSupport.STORY);
        Result tooLong = run("ppl", "--model", model.toString(), "--text", story.toString(), "--seqlen", "100000");
        assertEquals(1, tooLong.status);
        assertTrue(tooLong.err.contains("exceeds the model's context length"), tooLong.err);

        Path broken = Files.write(tmp.resolve("broken.gguf"), new byte[] {'G', 'G', 'U', 'F', 3, 0});
        Result format = run("info", "--model", broken.toString());
        assertEquals(1, format.status);
        assertTrue(format.err.startsWith("error: "), format.err);
    }

    @Test
    void infoJson() {
        Path model = TestSupport.storiesModel();
        Result r = run("info", "--model", model.toString(), "--json");
        assertEquals(0, r.status, r.err);
        String json = r.out.strip();
        assertTrue(json.startsWith("{") && json.endsWith("}") && json.lines().count() == 1, json);
        assertEquals("llama", field(json, "architecture"));
        assertEquals("512", field(json, "n_vocab"));
        assertEquals("5", field(json, "n_layer"));
        assertEquals(64, field(json, "sha256").length());
        Result human = run("info", "--model", model.toString());
        assertEquals(0, human.status);
        assertTrue(human.out.contains("llama"), human.out);
    }

    @Test
    void pplJsonOnAFileMatchesTheApi() throws Exception {
        Path model = TestSupport.storiesModel();
        // Text with CRLF and non-ASCII: the file is evaluated byte for byte as written.
        String text = TestSupport.STORY.replace("\n", "\r\n") + " Caf\u00e9.";
        Path file = Files.writeString(tmp.resolve("story.txt"), text);
        Result r = run("ppl", "--model", model.toString(), "--text", file.toString(), "--seqlen", "64", "--json");
        assertEquals(0, r.status, r.err);
        String json = r.out.strip();
        assertEquals(sha256(Files.readAllBytes(file)), field(json, "text_sha256"));
        assertEquals("64", field(json, "seqlen"));
        assertEquals("true", field(json, "bos"));
        assertTrue(r.err.contains("perplexity"), "progress bar on stderr: " + r.err);
        PerplexityResult api;
        try (Engine e = Engine.cpu(); Model m = Model.load(e, model)) {
            api = m.perplexity(text, PerplexityOptions.defaults().withSeqlen(64));
        }
        assertEquals(api.chunks(), Long.parseLong(field(json, "chunks")));
        assertEquals(api.tokens(), Long.parseLong(field(json, "tokens")));
        assertEquals(api.predicted(), Long.parseLong(field(json, "predicted")));
        assertEquals(api.perplexity(), Double.parseDouble(field(json, "ppl")), 1e-9 * api.perplexity());
        assertEquals(api.meanNll(), Double.parseDouble(field(json, "nll")), 1e-9);
        assertTrue(Double.parseDouble(field(json, "seconds")) >= 0);

        Result noBos = run("ppl", "--model", model.toString(), "--text", file.toString(), "--seqlen", "64",
                "--no-bos", "--json", "--quiet");
        assertEquals(0, noBos.status, noBos.err);
        assertEquals("false", field(noBos.out, "bos"));
        assertEquals("", noBos.err);
    }

    @Test
    void pplOnWikiText() {
        Path model = TestSupport.storiesModel();
        Result r = run("ppl", "--model", model.toString(), "--text", "wikitext2-test", "--seqlen", "128",
                "--max-chunks", "2", "--json", "--quiet");
        assertEquals(0, r.status, r.err);
        assertEquals("696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83", field(r.out, "text_sha256"));
        assertEquals("2", field(r.out, "chunks"));
        assertEquals("254", field(r.out, "predicted"));
        Result human = run("ppl", "--model", model.toString(), "--text", "wikitext2-validation", "--seqlen", "128",
                "--max-chunks", "1", "--quiet");
        assertEquals(0, human.status, human.err);
        assertTrue(human.out.contains("b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e"), human.out);
        assertTrue(human.out.contains("perplexity"), human.out);
    }

    @Test
    void generateStreamsTheGreedyContinuation() {
        Path model = TestSupport.storiesModel();
        Result r = run("generate", "--model", model.toString(), "--prompt", "Once upon a time", "--max-tokens", "20");
        assertEquals(0, r.status, r.err);
        String expected;
        try (Engine e = Engine.cpu(); Model m = Model.load(e, model); Session s = m.newSession()) {
            expected = s.generate(m.tokenizer().encode("Once upon a time", Bos.DEFAULT),
                    GenerationOptions.greedy(20), null).text();
        }
        assertEquals(expected + System.lineSeparator(), r.out);
        assertTrue(r.err.contains("tokens"), r.err);

        Result sampled1 = run("generate", "--model", model.toString(), "--prompt", "Once", "--max-tokens", "15",
                "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "7");
        Result sampled2 = run("generate", "--model", model.toString(), "--prompt", "Once", "--max-tokens", "15",
                "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "7");
        assertEquals(0, sampled1.status, sampled1.err);
        assertEquals(sampled1.out, sampled2.out);
    }
}

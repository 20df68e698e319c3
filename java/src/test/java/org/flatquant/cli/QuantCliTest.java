package org.flatquant.cli;

import static org.flatquant.cli.MainTest.field;
import static org.flatquant.cli.MainTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.PerplexityOptions;
import org.flatquant.QuantMethod;
import org.flatquant.QuantScheme;
import org.flatquant.QuantizeOptions;
import org.flatquant.TestSupport;
import org.flatquant.cli.MainTest.Result;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code calibrate} and the --quant/--method/--artifact options of ppl, eval, generate and info, in-process. */
class QuantCliTest {
    @TempDir
    Path tmp;

    static List<Path> files(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.toList();
        }
    }

    private Path calibrate(Path artifact) {
        Result r = run("calibrate", "--model", TestSupport.storiesModel().toString(), "--out", artifact.toString(),
                "--samples", "4", "--seqlen", "64", "--epochs", "2", "--threads", "2", "--json");
        assertEquals(0, r.status(), r.err());
        return artifact;
    }

    @Test
    void calibrateThenEvaluateTheArtifact() throws Exception {
        Path model = TestSupport.storiesModel();
        Path artifact = tmp.resolve("stories.fq");
        Result r = run("calibrate", "--model", model.toString(), "--out", artifact.toString(), "--samples", "4",
                "--seqlen", "64", "--epochs", "2", "--threads", "2", "--json");
        assertEquals(0, r.status(), r.err());
        assertTrue(Files.isRegularFile(artifact));
        String json = r.out().strip();
        assertEquals(artifact.toAbsolutePath().toString(), field(json, "artifact"));
        assertEquals("w4a4kv4", field(json, "quant"));
        assertEquals("flatquant", field(json, "method"));
        assertEquals("rtn", field(json, "weight_quantizer"));
        assertEquals("wikitext2-validation", field(json, "calib_text"));
        assertEquals("b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e",
                field(json, "calib_text_sha256"));
        assertEquals("4", field(json, "windows"));
        assertEquals("5", field(json, "layers"));
        assertEquals("4", field(json, "batch"));
        assertTrue(Double.parseDouble(field(json, "final_mse")) > 0);
        // Progress: a line with the final loss of every layer.
        for (int l = 1; l <= 5; l++) {
            assertTrue(r.err().contains("layer " + l + "/5  loss "), r.err());
        }

        Path story = Files.writeString(tmp.resolve("story.txt"), TestSupport.STORY);
        Result ppl = run("ppl", "--model", model.toString(), "--text", story.toString(), "--seqlen", "64",
                "--artifact", artifact.toString(), "--json", "--quiet");
        assertEquals(0, ppl.status(), ppl.err());
        assertEquals("w4a4kv4", field(ppl.out(), "quant"));
        assertEquals("flatquant", field(ppl.out(), "method"));
        assertEquals("rtn", field(ppl.out(), "weight_quantizer"));
        assertEquals(artifact.toString(), field(ppl.out(), "artifact"));
        double cli = Double.parseDouble(field(ppl.out(), "ppl"));
        double api;
        try (Engine e = Engine.cpu(); Model base = Model.load(e, model);
             Model q = base.quantize(QuantizeOptions.artifact(artifact))) {
            api = q.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(64)).perplexity();
        }
        assertEquals(api, cli, 1e-9 * api);
        // Naming the artifact's own scheme explicitly gives the same model.
        Result named = run("ppl", "--model", model.toString(), "--text", story.toString(), "--seqlen", "64",
                "--quant", "w4a4kv4", "--method", "flatquant", "--artifact", artifact.toString(), "--json", "--quiet");
        assertEquals(0, named.status(), named.err());
        assertEquals(cli, Double.parseDouble(field(named.out(), "ppl")), 1e-9 * cli);
        // ... and a contradicting one is an error.
        Result contradicts = run("ppl", "--model", model.toString(), "--text", story.toString(), "--seqlen", "64",
                "--method", "rotate", "--artifact", artifact.toString(), "--quiet");
        assertEquals(1, contradicts.status());
        assertTrue(contradicts.err().startsWith("error: ") && contradicts.err().contains("flatquant"),
                contradicts.err());

        Result info = run("info", "--model", model.toString(), "--artifact", artifact.toString());
        assertEquals(0, info.status(), info.err());
        assertTrue(info.out().contains("quantization    w4a4kv4 flatquant, rtn weights"), info.out());
        Result infoJson = run("info", "--model", model.toString(), "--artifact", artifact.toString(), "--json");
        assertEquals("flatquant", field(infoJson.out(), "method"));

        Result gen = run("generate", "--model", model.toString(), "--prompt", "Once upon a time", "--max-tokens",
                "8", "--artifact", artifact.toString());
        assertEquals(0, gen.status(), gen.err());
        assertFalse(gen.out().isBlank());
    }

    @Test
    void fullPrecisionJsonHasNullQuantFields() {
        Path model = TestSupport.storiesModel();
        Result r = run("ppl", "--model", model.toString(), "--text", "wikitext2-test", "--seqlen", "64",
                "--max-chunks", "1", "--json", "--quiet");
        assertEquals(0, r.status(), r.err());
        for (String f : new String[] {"quant", "method", "weight_quantizer", "artifact"}) {
            assertEquals("null", field(r.out(), f));
        }
        Result info = run("info", "--model", model.toString(), "--json");
        assertEquals("null", field(info.out(), "quant"));
    }

    @Test
    void rtnAndRotateWithoutAnArtifact() {
        Path model = TestSupport.storiesModel();
        Result rtn = run("ppl", "--model", model.toString(), "--text", "wikitext2-test", "--seqlen", "64",
                "--max-chunks", "2", "--quant", "w4a8kv8", "--json", "--quiet");
        assertEquals(0, rtn.status(), rtn.err());
        assertEquals("w4a8kv8", field(rtn.out(), "quant"));
        assertEquals("rtn", field(rtn.out(), "method"));
        Result rot = run("ppl", "--model", model.toString(), "--text", "wikitext2-test", "--seqlen", "64",
                "--max-chunks", "2", "--method", "rotate", "--seed", "3", "--json", "--quiet");
        assertEquals(0, rot.status(), rot.err());
        assertEquals("w4a4kv4", field(rot.out(), "quant"));
        assertEquals("rotate", field(rot.out(), "method"));
        double api;
        try (Engine e = Engine.cpu(); Model base = Model.load(e, model);
             Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.ROTATE).withSeed(3))) {
            api = q.perplexity(org.flatquant.WikiText.test(TestSupport.dataDir()),
                    PerplexityOptions.defaults().withSeqlen(64).withMaxChunks(2)).perplexity();
        }
        assertEquals(api, Double.parseDouble(field(rot.out(), "ppl")), 1e-9 * api);
        Result gen = run("generate", "--model", model.toString(), "--prompt", "Once", "--max-tokens", "4",
                "--method", "rotate", "--quant-seed", "3");
        assertEquals(0, gen.status(), gen.err());
    }

    @Test
    void evalJsonNamesTheQuantization() {
        Result r = run("eval", "--model", TestSupport.storiesModel().toString(), "--tasks", "piqa", "--limit", "2",
                "--data", TestSupport.dataDir().resolve("tasks").toString(), "--quant", "w4a16", "--json", "--quiet");
        assertEquals(0, r.status(), r.err());
        assertEquals("w4a16", field(r.out(), "quant"));
        assertEquals("rtn", field(r.out(), "method"));
        assertEquals("rtn", field(r.out(), "weight_quantizer"));
        assertEquals("null", field(r.out(), "artifact"));
        assertTrue(r.out().contains("\"task\": \"piqa\""), r.out());
    }

    @Test
    void pplOnC4() {
        Result r = run("ppl", "--model", TestSupport.storiesModel().toString(), "--text", "c4", "--seqlen", "64",
                "--max-chunks", "3", "--json", "--quiet");
        assertEquals(0, r.status(), r.err());
        assertEquals("409f11b44890b5704864b9a38f4ad419440dfbfd91dd811b53b4e5d3a48a8ae8", field(r.out(), "text_sha256"));
        assertTrue(field(r.out(), "text_file").endsWith("c4-train.00000-of-01024.first1000.jsonl"), r.out());
        assertEquals("3", field(r.out(), "chunks"));
    }

    @Test
    void usageErrors() throws IOException {
        String model = TestSupport.storiesModel().toString();
        Result noArtifact = run("ppl", "--model", model, "--text", "wikitext2-test", "--method", "flatquant");
        assertEquals(2, noArtifact.status());
        assertTrue(noArtifact.err().startsWith("error: --method flatquant needs --artifact"), noArtifact.err());
        Result badQuant = run("ppl", "--model", model, "--text", "wikitext2-test", "--quant", "w4a4kv3x");
        assertEquals(2, badQuant.status());
        assertTrue(badQuant.err().startsWith("error: bad quantization 'w4a4kv3x': expected w<bits>a<bits>[kv<bits>]"),
                badQuant.err());
        Result badWidth = run("eval", "--model", model, "--tasks", "piqa", "--quant", "w4a4kv1");
        assertEquals(2, badWidth.status());
        assertTrue(badWidth.err().contains("2 to 8"), badWidth.err());
        Result badMethod = run("generate", "--model", model, "--prompt", "x", "--method", "quarot");
        assertEquals(2, badMethod.status());
        assertTrue(badMethod.err().startsWith("error: unknown method 'quarot'"), badMethod.err());
        assertEquals(2, run("ppl", "--model", model, "--text", "wikitext2-test", "--seed", "1").status());
        assertEquals(2, run("calibrate", "--model", model).status());                     // no --out
        assertEquals(2, run("calibrate", "--model", model, "--out", "a.fq", "--quant", "w4").status());
        assertEquals(2, run("calibrate", "--model", model, "--out", "a.fq", "--weights", "awq").status());
        assertEquals(2, run("calibrate", "--model", model, "--out", "a.fq", "--samples", "2", "--batch", "4")
                .status());
        Result help = run("calibrate", "--help");
        assertEquals(0, help.status());
        assertTrue(help.out().contains("--calib-text"), help.out());
        assertTrue(run("--help").out().contains("calibrate"));
        // Errors found before any work: a missing output directory, a missing artifact.
        Result noDir = run("calibrate", "--model", model, "--out", tmp.resolve("none/a.fq").toString());
        assertEquals(1, noDir.status());
        assertTrue(noDir.err().startsWith("error: the directory of --out does not exist"), noDir.err());
        Result missing = run("ppl", "--model", model, "--text", "wikitext2-test", "--artifact",
                tmp.resolve("missing.fq").toString());
        assertEquals(1, missing.status());
        assertTrue(missing.err().startsWith("error: artifact file not found"), missing.err());
        assertEquals(List.of(), files(tmp));
    }

    @Test
    void gptqOnTopOfAnArtifact() throws IOException {
        String model = TestSupport.storiesModel().toString();
        Path base = calibrate(tmp.resolve("base.fq"));
        Path out = tmp.resolve("gptq.fq");
        Result r = run("calibrate", "--model", model, "--out", out.toString(), "--base-artifact", base.toString(),
                "--weights", "gptq", "--json", "--quiet");
        assertEquals(0, r.status(), r.err());
        assertEquals("flatquant", field(r.out(), "method"));
        assertEquals("gptq", field(r.out(), "weight_quantizer"));
        assertEquals(base.toString(), field(r.out(), "base_artifact"));
        assertEquals("4", field(r.out(), "samples"));
        assertEquals("null", field(r.out(), "seqlen"));
        Result ppl = run("ppl", "--model", model, "--text", "wikitext2-test", "--seqlen", "64", "--max-chunks", "2",
                "--artifact", out.toString(), "--json", "--quiet");
        assertEquals(0, ppl.status(), ppl.err());
        assertEquals("gptq", field(ppl.out(), "weight_quantizer"));
        Result rtn = run("calibrate", "--model", model, "--out", tmp.resolve("x.fq").toString(), "--base-artifact",
                base.toString());
        assertEquals(2, rtn.status());
        assertTrue(rtn.err().contains("needs weights GPTQ"), rtn.err());
        assertEquals(List.of(base, out).stream().sorted().toList(), files(tmp).stream().sorted().toList());
    }

    @Test
    void rotateCalibrationNeedsNoText() throws IOException {
        Path artifact = tmp.resolve("rotate.fq");
        Result r = run("calibrate", "--model", TestSupport.storiesModel().toString(), "--out", artifact.toString(),
                "--method", "rotate", "--calib-text", tmp.resolve("not-read.txt").toString(), "--quiet");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("none needed"), r.out());
        assertEquals("", r.err());
        assertEquals(List.of(artifact), files(tmp));
    }
}

package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Quantized-model files through the Java API, on stories260K: {@link Model#saveQuantized} then {@link Model#load}.
 * The reference is the in-memory quantized model of {@link Model#quantize}: on the CPU the loaded file runs the same
 * fake-quantized computation, so perplexities and logits must be identical, not merely close. Also checked: the
 * refusals, cancellation (the target left as it was, no temporary file) and the progress reports.
 */
class QuantizedModelFileTest {
    static Engine engine;
    static Model base;
    /** The WikiText-2 test text cut to what four 64-token windows need, so each perplexity takes milliseconds. */
    static String text;

    @TempDir
    Path tmp;

    @BeforeAll
    static void load() {
        engine = Engine.cpu(2);
        base = Model.load(engine, TestSupport.storiesModel());
        text = WikiText.test(TestSupport.dataDir()).substring(0, 4000);
    }

    @AfterAll
    static void close() {
        if (base != null) {
            base.close();
        }
        if (engine != null) {
            engine.close();
        }
    }

    static PerplexityOptions eval() {
        return PerplexityOptions.defaults().withSeqlen(64).withMaxChunks(4);
    }

    static List<Path> files(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.toList();
        }
    }

    /** Saves {@code q}, loads the file and checks it computes exactly what {@code q} computes. */
    private void assertRoundTrip(Model q, Path file) {
        q.saveQuantized(file);
        assertTrue(Files.isRegularFile(file));
        try (Model loaded = Model.load(engine, file)) {
            ModelInfo a = q.info();
            ModelInfo b = loaded.info();
            assertTrue(b.isQuantized() && b.quantizedFile(), b.toString());
            assertEquals(a.quant(), b.quant());
            assertEquals(a.method(), b.method());
            assertEquals(a.weightQuantizer(), b.weightQuantizer());
            assertEquals(List.of(a.vocabSize(), a.contextLength(), a.layerCount(), a.embeddingLength()),
                    List.of(b.vocabSize(), b.contextLength(), b.layerCount(), b.embeddingLength()));
            assertEquals("cpu", b.evalEngine());
            assertEquals("cpu", b.sessionEngine());
            assertEquals(file.toAbsolutePath(), loaded.path());
            double expected = q.perplexity(text, eval()).perplexity();
            assertEquals(expected, loaded.perplexity(text, eval()).perplexity(), 0.0);
            int[] ids = q.tokenizer().encode("Once upon a time, there was a little girl", Bos.DEFAULT);
            assertArrayEquals(ids, loaded.tokenizer().encode("Once upon a time, there was a little girl", Bos.DEFAULT));
            assertArrayEquals(q.logits(ids), loaded.logits(ids));
            // Sessions of the loaded model decode greedily exactly as the in-memory model's.
            try (Session s1 = q.newSession(64); Session s2 = loaded.newSession(64)) {
                assertArrayEquals(s1.generate(ids, GenerationOptions.greedy(12), null).tokens(),
                        s2.generate(ids, GenerationOptions.greedy(12), null).tokens());
            }
        }
    }

    @Test
    void rotateRoundTripsExactly() {
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.ROTATE).withSeed(3))) {
            assertFalse(q.info().quantizedFile());
            assertEquals("cpu", q.info().evalEngine());
            assertRoundTrip(q, tmp.resolve("rotate.gguf"));
        }
    }

    @Test
    void rtnWithEightBitActivationsRoundTripsExactly() {
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.parse("w4a8kv8"), QuantMethod.RTN))) {
            assertRoundTrip(q, tmp.resolve("rtn.gguf"));
        }
    }

    @Test
    void flatQuantWithLearnedTransformsRoundTripsExactly() {
        // Learned transforms, smoothing and clipping: what rtn and rotate do not exercise. Tiny but real calibration.
        Path artifact = tmp.resolve("stories.fq");
        Calibrator.builder().samples(4).seqlen(64).epochs(1).build()
                .calibrate(base, WikiText.validation(TestSupport.dataDir()).substring(0, 20_000), artifact);
        try (Model q = base.quantize(QuantizeOptions.artifact(artifact))) {
            assertEquals("flatquant", q.info().method());
            assertRoundTrip(q, tmp.resolve("flatquant.gguf"));
        }
    }

    @Test
    void aLoadedFileSavesAgainAndIsNotQuantizedTwice() {
        Path first = tmp.resolve("first.gguf");
        Path second = tmp.resolve("second.gguf");
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.ROTATE))) {
            q.saveQuantized(first);
        }
        try (Model loaded = Model.load(engine, first)) {
            InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                    () -> loaded.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN)));
            assertTrue(e.getMessage().contains("already quantized"), e.getMessage());
            assertRoundTrip(loaded, second);
        }
    }

    @Test
    void refusals() throws IOException {
        InvalidArgumentException fp = assertThrows(InvalidArgumentException.class,
                () -> base.saveQuantized(tmp.resolve("fp.gguf")));
        assertTrue(fp.getMessage().contains("full precision"), fp.getMessage());
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN))) {
            NotFoundException noDir = assertThrows(NotFoundException.class,
                    () -> q.saveQuantized(tmp.resolve("missing/q.gguf")));
            assertTrue(noDir.getMessage().contains("does not exist"), noDir.getMessage());
            assertThrows(InvalidArgumentException.class, () -> q.saveQuantized(tmp));
            assertThrows(NullPointerException.class, () -> q.saveQuantized(null));
        }
        // 16-bit weights have no integer codes to store.
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.parse("w16a8kv8"), QuantMethod.RTN))) {
            assertThrows(UnsupportedInputException.class, () -> q.saveQuantized(tmp.resolve("w16.gguf")));
        }
        assertEquals(List.of(), files(tmp));
        Model closed = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN));
        closed.close();
        assertThrows(IllegalStateException.class, () -> closed.saveQuantized(tmp.resolve("closed.gguf")));
        assertEquals(List.of(), files(tmp));
    }

    @Test
    void progressReportsTheSaveStage() {
        List<String> stages = new ArrayList<>();
        List<long[]> reports = new ArrayList<>();
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN))) {
            q.saveQuantized(tmp.resolve("q.gguf"), (stage, done, total) -> {
                stages.add(stage);
                reports.add(new long[] {done, total});
                return true;
            }, null);
        }
        assertFalse(stages.isEmpty());
        assertTrue(stages.stream().allMatch("save"::equals), stages.toString());
        for (long[] r : reports) {
            assertTrue(r[0] >= 0 && r[0] <= r[1], r[0] + "/" + r[1]);
        }
    }

    @Test
    void cancellingLeavesTheTargetAsItWasAndNoTemporaryFile() throws IOException {
        Path target = Files.writeString(tmp.resolve("q.gguf"), "the previous content");
        try (Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN));
             CancellationToken token = new CancellationToken()) {
            // A listener that says no at its first report.
            assertThrows(CancelledException.class, () -> q.saveQuantized(target, (s, d, t) -> false, null));
            // A listener that throws: its exception comes back, unwrapped.
            IllegalStateException thrown = assertThrows(IllegalStateException.class,
                    () -> q.saveQuantized(target, (s, d, t) -> {
                        throw new IllegalStateException("listener says stop");
                    }, null));
            assertEquals("listener says stop", thrown.getMessage());
            // A token cancelled before the call.
            token.cancel();
            assertThrows(CancelledException.class, () -> q.saveQuantized(target, null, token));
            assertEquals("the previous content", Files.readString(target));
            assertEquals(List.of(target), files(tmp));
            // The token is released after each call: it can be reset, reused and closed.
            token.reset();
            q.saveQuantized(target, null, token);
        }
        assertTrue(Files.size(target) > 1000);
        assertEquals(List.of(target), files(tmp));
    }
}

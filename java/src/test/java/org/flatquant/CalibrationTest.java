package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
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
 * Calibration and quantized models through the Java API, on stories260K (5 layers) with tiny settings: 4 windows
 * of 64 tokens, 2 epochs. What is checked is the contract (events, artifacts, round trips, refusals, cancellation,
 * life cycle); the numerics of calibration are the native tests' business.
 */
class CalibrationTest {
    static final int LAYERS = 5;
    static Path path;
    static Engine engine;
    static Model model;
    static String calibText;

    @TempDir
    Path tmp;

    @BeforeAll
    static void load() {
        path = TestSupport.storiesModel();
        engine = Engine.cpu(2);
        model = Model.load(engine, path);
        calibText = WikiText.validation(TestSupport.dataDir()).substring(0, 20_000);
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

    static Calibrator.Builder tiny() {
        return Calibrator.builder().samples(4).seqlen(64).epochs(2);
    }

    static PerplexityOptions eval() {
        return PerplexityOptions.defaults().withSeqlen(64);
    }

    static List<Path> files(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.toList();
        }
    }

    /** A listener recording everything, in order. */
    static final class Recorder implements CalibrationListener {
        final List<CalibrationEvent> events = new ArrayList<>();
        final List<String> stages = new ArrayList<>();

        @Override
        public boolean onEpoch(CalibrationEvent event) {
            events.add(event);
            return true;
        }

        @Override
        public boolean onProgress(String stage, long done, long total) {
            assertTrue(done >= 0 && done <= total, stage + " " + done + "/" + total);
            if (stages.isEmpty() || !stages.get(stages.size() - 1).equals(stage)) {
                stages.add(stage);
            }
            return true;
        }
    }

    @Test
    void flatquantCalibrationReportsEveryEpochOfEveryLayerAndRoundTrips() {
        Path artifact = tmp.resolve("stories.w4a4kv4.fq");
        Recorder rec = new Recorder();
        CalibrationResult r = tiny().build().calibrate(model, calibText, artifact, rec);

        assertTrue(Files.isRegularFile(artifact));
        assertEquals(artifact.toAbsolutePath(), r.artifact());
        assertEquals(LAYERS, r.layerCount());
        assertEquals(4, r.windows());
        assertArrayEquals(model.tokenizer().encode(calibText, Bos.DEFAULT),
                model.tokenizer().encode(calibText)); // the count below is of this tokenization
        assertEquals(model.tokenizer().encode(calibText).length, r.tokens());
        assertFalse(r.onGpu());
        assertTrue(r.seconds() >= 0);
        // One event per epoch per layer, in order, each with a finite positive loss.
        assertEquals(LAYERS * 2, rec.events.size());
        double lastEpochMean = 0;
        for (int i = 0; i < rec.events.size(); i++) {
            CalibrationEvent e = rec.events.get(i);
            assertEquals(i / 2, e.layer());
            assertEquals(i % 2 + 1, e.epoch());
            assertEquals(LAYERS, e.layerCount());
            assertEquals(2, e.epochCount());
            assertTrue(Double.isFinite(e.mse()) && e.mse() > 0, e.toString());
            assertTrue(e.lr() > 0 && e.lr() <= 5e-3, e.toString());
            assertEquals(i == rec.events.size() - 1, e.isLast());
            if (e.epoch() == 2) {
                lastEpochMean += e.mse() / LAYERS;
            }
        }
        assertEquals(lastEpochMean, r.finalMse(), 1e-12 * lastEpochMean);
        assertEquals(List.of("tokenize", "calibrate", "save"), rec.stages);

        // The artifact makes the same model every time, from this base or from a freshly loaded one.
        double ppl;
        try (Model q = model.quantize(QuantizeOptions.artifact(artifact))) {
            ModelInfo info = q.info();
            assertTrue(info.isQuantized());
            assertEquals("w4a4kv4", info.quant());
            assertEquals("flatquant", info.method());
            assertEquals("rtn", info.weightQuantizer());
            assertEquals(model.info().vocabSize(), info.vocabSize());
            assertEquals(model.fingerprint(), q.fingerprint());
            assertTrue(q.toString().contains("w4a4kv4 flatquant"), q.toString());
            ppl = q.perplexity(TestSupport.STORY, eval()).perplexity();
            assertTrue(Double.isFinite(ppl) && ppl > 1, "perplexity " + ppl);
        }
        double fp = model.perplexity(TestSupport.STORY, eval()).perplexity();
        assertNotEquals(fp, ppl, "quantization changed nothing");
        try (Engine other = Engine.cpu(1);
             Model base = Model.load(other, path);
             Model q = base.quantize(QuantizeOptions.artifact(artifact).withQuant(QuantScheme.W4A4KV4)
                     .withMethod(QuantMethod.FLATQUANT))) {
            assertEquals(ppl, q.perplexity(TestSupport.STORY, eval()).perplexity(), 1e-9 * ppl);
        }
    }

    @Test
    void gptqWeightsFromScratchAndOnTopOfAnArtifact() {
        Path gptq = tmp.resolve("rtn-gptq.fq");
        CalibrationResult g = Calibrator.builder().method(QuantMethod.RTN).weights(WeightQuantizer.GPTQ).samples(4)
                .seqlen(64).build().calibrate(model, calibText, gptq);
        assertEquals(WeightQuantizer.GPTQ, g.weights());
        assertEquals(4, g.windows());
        try (Model q = model.quantize(QuantizeOptions.artifact(gptq))) {
            assertEquals("gptq", q.info().weightQuantizer());
            assertEquals("rtn", q.info().method());
            assertTrue(Double.isFinite(q.perplexity(TestSupport.STORY, eval()).perplexity()));
        }

        Path flat = tmp.resolve("flat.fq");
        tiny().seed(2).build().calibrate(model, calibText, flat);
        Path onTop = tmp.resolve("flat-gptq.fq");
        Recorder rec = new Recorder();
        // samples/seqlen/seed are the base artifact's: the builder's defaults (128 x 2048, seed 0) do not matter.
        Calibrator c = Calibrator.builder().weights(WeightQuantizer.GPTQ).baseArtifact(flat).build();
        assertEquals(null, c.quant());
        assertEquals(null, c.method());
        CalibrationResult r = c.calibrate(model, calibText, onTop, rec);
        assertEquals(QuantScheme.W4A4KV4, r.quant());
        assertEquals(QuantMethod.FLATQUANT, r.method());
        assertEquals(WeightQuantizer.GPTQ, r.weights());
        assertEquals(4, r.windows());
        assertEquals(List.of(), rec.events, "nothing is learned again");
        try (Model q = model.quantize(QuantizeOptions.artifact(onTop))) {
            assertEquals("flatquant", q.info().method());
            assertEquals("gptq", q.info().weightQuantizer());
            assertTrue(Double.isFinite(q.perplexity(TestSupport.STORY, eval()).perplexity()));
        }
        // Another text than the base artifact's, RTN weights, or a method that contradicts it: refused.
        InvalidArgumentException otherText = assertThrows(InvalidArgumentException.class,
                () -> c.calibrate(model, calibText.substring(1000), tmp.resolve("x.fq")));
        assertTrue(otherText.getMessage().contains("sha256"), otherText.getMessage());
        assertThrows(InvalidArgumentException.class,
                () -> Calibrator.builder().baseArtifact(flat).build());
        assertThrows(InvalidArgumentException.class, () -> c.toBuilder().method(QuantMethod.ROTATE).build()
                .calibrate(model, calibText, tmp.resolve("x.fq")));
        assertFalse(Files.exists(tmp.resolve("x.fq")));
    }

    @Test
    void calibrationIsDeterministicForASeed() throws IOException {
        Path a = tmp.resolve("a.fq");
        Path b = tmp.resolve("b.fq");
        Path c = tmp.resolve("c.fq");
        tiny().epochs(1).seed(3).build().calibrate(model, calibText, a);
        tiny().epochs(1).seed(3).build().calibrate(model, calibText, b);
        tiny().epochs(1).seed(4).build().calibrate(model, calibText, c);
        assertEquals(-1, Files.mismatch(a, b));
        assertNotEquals(-1, Files.mismatch(a, c));
    }

    @Test
    void rtnAndRotateNeedNoArtifact() {
        QuantScheme w4a8 = QuantScheme.parse("w4a8kv8");
        try (Model rtn = model.quantize(QuantizeOptions.of(w4a8, QuantMethod.RTN));
             Model rot1 = model.quantize(QuantizeOptions.of(w4a8, QuantMethod.ROTATE).withSeed(1));
             Model rot1b = model.quantize(QuantizeOptions.of(w4a8, QuantMethod.ROTATE).withSeed(1));
             Model rot2 = model.quantize(QuantizeOptions.of(w4a8, QuantMethod.ROTATE).withSeed(2))) {
            assertEquals("w4a8kv8", rtn.info().quant());
            assertEquals("rtn", rtn.info().method());
            assertEquals("rotate", rot1.info().method());
            double p1 = rot1.perplexity(TestSupport.STORY, eval()).perplexity();
            assertTrue(Double.isFinite(rtn.perplexity(TestSupport.STORY, eval()).perplexity()));
            assertEquals(p1, rot1b.perplexity(TestSupport.STORY, eval()).perplexity(), 1e-9 * p1);
            assertNotEquals(p1, rot2.perplexity(TestSupport.STORY, eval()).perplexity());
        }
    }

    @Test
    void aRotateArtifactHoldsTheRotationsOfItsSeed() {
        Path artifact = tmp.resolve("rotate.fq");
        CalibrationResult r = Calibrator.builder().method(QuantMethod.ROTATE).seed(5).build()
                .calibrate(model, "", artifact);
        assertEquals(0, r.windows());
        assertEquals(0, r.tokens());
        try (Model fromArtifact = model.quantize(QuantizeOptions.artifact(artifact));
             Model direct = model.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.ROTATE).withSeed(5))) {
            assertEquals("rotate", fromArtifact.info().method());
            double a = fromArtifact.perplexity(TestSupport.STORY, eval()).perplexity();
            assertEquals(a, direct.perplexity(TestSupport.STORY, eval()).perplexity(), 1e-9 * a);
        }
        // Names that contradict the artifact are refused.
        InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                () -> model.quantize(QuantizeOptions.artifact(artifact).withMethod(QuantMethod.RTN)));
        assertTrue(e.getMessage().contains("rotate"), e.getMessage());
        assertThrows(InvalidArgumentException.class,
                () -> model.quantize(QuantizeOptions.artifact(artifact).withQuant(QuantScheme.parse("w8a8"))));
    }

    @Test
    void refusals() throws IOException {
        // flatquant without an artifact, on the Java side and natively alike.
        InvalidArgumentException noArtifact = assertThrows(InvalidArgumentException.class,
                () -> model.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.FLATQUANT)));
        assertTrue(noArtifact.getMessage().contains("artifact"), noArtifact.getMessage());
        assertThrows(NotFoundException.class,
                () -> model.quantize(QuantizeOptions.artifact(tmp.resolve("missing.fq"))));
        assertThrows(InvalidArgumentException.class, () -> model.quantize(QuantizeOptions.artifact(tmp)));
        // A text too short for the windows, a window beyond the context, an empty text for flatquant.
        assertThrows(InvalidArgumentException.class,
                () -> tiny().build().calibrate(model, "Once upon a time.", tmp.resolve("x.fq")));
        assertThrows(InvalidArgumentException.class,
                () -> tiny().seqlen(model.info().contextLength() + 1).build().calibrate(model, calibText,
                        tmp.resolve("x.fq")));
        assertThrows(InvalidArgumentException.class, () -> tiny().build().calibrate(model, "", tmp.resolve("x.fq")));
        assertThrows(NotFoundException.class,
                () -> tiny().build().calibrate(model, calibText, tmp.resolve("no/such/dir/x.fq")));
        assertThrows(InvalidArgumentException.class, () -> tiny().build().calibrate(model, calibText, tmp));
        assertEquals(List.of(), files(tmp));
        // A quantized model is neither calibrated nor quantized again.
        try (Model q = model.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN))) {
            assertThrows(InvalidArgumentException.class,
                    () -> q.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN)));
            assertThrows(InvalidArgumentException.class,
                    () -> tiny().build().calibrate(q, calibText, tmp.resolve("q.fq")));
        }
    }

    @Test
    void anArtifactOfAnotherModelIsRefusedNamingBothFingerprints() throws IOException {
        Path artifact = tmp.resolve("stories.fq");
        Calibrator.builder().method(QuantMethod.ROTATE).build().calibrate(model, "", artifact);
        // Another model: the same file with one mantissa bit of its last weight flipped (it loads, but its
        // SHA-256 differs).
        byte[] bytes = Files.readAllBytes(path);
        bytes[bytes.length - 4] ^= 1;
        Path otherFile = Files.write(tmp.resolve("other.gguf"), bytes);
        try (Model other = Model.load(engine, otherFile)) {
            String theirs = other.fingerprint();
            assertNotEquals(model.fingerprint(), theirs);
            InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                    () -> other.quantize(QuantizeOptions.artifact(artifact)));
            assertTrue(e.getMessage().contains(model.fingerprint()) && e.getMessage().contains(theirs),
                    e.getMessage());
        }
    }

    @Test
    void anArtifactOfSmolLm2IsRefused() throws IOException {
        Path smol = TestSupport.smolLm2Model();
        Path artifact = tmp.resolve("smol.fq");
        try (Model m = Model.load(engine, smol)) {
            Calibrator.builder().method(QuantMethod.RTN).build().calibrate(m, "", artifact);
            InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                    () -> model.quantize(QuantizeOptions.artifact(artifact)));
            assertTrue(e.getMessage().contains(m.fingerprint()) && e.getMessage().contains(model.fingerprint()),
                    e.getMessage());
        }
    }

    @Test
    void corruptArtifactsAreModelFormatErrors() throws IOException {
        Path artifact = tmp.resolve("good.fq");
        tiny().epochs(1).build().calibrate(model, calibText, artifact);
        byte[] good = Files.readAllBytes(artifact);
        for (int keep : new int[] {0, 4, 8, 40, good.length / 2, good.length - 1}) {
            Path cut = Files.write(tmp.resolve("cut-" + keep + ".fq"), java.util.Arrays.copyOf(good, keep));
            assertThrows(ModelFormatException.class, () -> model.quantize(QuantizeOptions.artifact(cut)),
                    "truncated to " + keep + " bytes");
        }
        // The header length (the first 8 bytes, little endian) pointing past the end of the file.
        byte[] badHeader = good.clone();
        badHeader[7] = 0x7f;
        Path bad = Files.write(tmp.resolve("bad-header.fq"), badHeader);
        assertThrows(ModelFormatException.class, () -> model.quantize(QuantizeOptions.artifact(bad)));
    }

    @Test
    void cancellingThroughATokenLeavesNothingBehind() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("out"));
        Path artifact = dir.resolve("cancelled.fq");
        try (CancellationToken token = new CancellationToken()) {
            List<CalibrationEvent> seen = new ArrayList<>();
            Thread canceller = new Thread(token::cancel);
            CalibrationListener listener = e -> {
                seen.add(e);
                if (seen.size() == 1) {
                    canceller.start(); // from another thread, as Ctrl-C would
                }
                return true;
            };
            Calibrator c = tiny().epochs(1000).cancellation(token).build();
            assertThrows(CancelledException.class, () -> c.calibrate(model, calibText, artifact, listener));
            canceller.join();
            assertTrue(seen.size() >= 1 && seen.size() < 1000 * LAYERS, seen.size() + " events");
            assertEquals(List.of(), files(dir), "no artifact and no temporary file");

            // An existing file stays as it was.
            Files.writeString(artifact, "previous");
            token.reset();
            Thread again = new Thread(token::cancel);
            again.start();
            again.join();
            assertThrows(CancelledException.class, () -> c.calibrate(model, calibText, artifact, null));
            assertEquals("previous", Files.readString(artifact));
            assertEquals(List.of(artifact), files(dir));
        }
    }

    @Test
    void aListenerCancelsByReturningFalseOrThrowing() throws IOException {
        Path artifact = tmp.resolve("x.fq");
        assertThrows(CancelledException.class,
                () -> tiny().epochs(50).build().calibrate(model, calibText, artifact, e -> false));
        IllegalStateException boom = new IllegalStateException("listener failed on purpose");
        IllegalStateException thrown = assertThrows(IllegalStateException.class,
                () -> tiny().epochs(50).build().calibrate(model, calibText, artifact, e -> {
                    throw boom;
                }));
        assertSame(boom, thrown);
        // A progress report that throws: the same.
        CalibrationListener progressThrows = new CalibrationListener() {
            @Override
            public boolean onEpoch(CalibrationEvent event) {
                return true;
            }

            @Override
            public boolean onProgress(String stage, long done, long total) {
                throw new ArithmeticException("progress failed on purpose");
            }
        };
        assertThrows(ArithmeticException.class,
                () -> tiny().build().calibrate(model, calibText, artifact, progressThrows));
        assertEquals(List.of(), files(tmp));
        // The model is unharmed.
        assertTrue(Double.isFinite(model.perplexity(TestSupport.STORY, eval()).perplexity()));
        // Quantizing cancels the same way.
        assertThrows(CancelledException.class, () -> model.quantize(
                QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.ROTATE), (stage, done, total) -> false));
    }

    @Test
    void theBaseMayCloseFirstButTheEngineMayNot() {
        try (Engine e = Engine.cpu(1)) {
            Model base = Model.load(e, path);
            Model q = base.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.ROTATE));
            double before = q.perplexity(TestSupport.STORY, eval()).perplexity();
            base.close();
            assertThrows(IllegalStateException.class, base::info);
            // The quantized model keeps what it shares with its base alive: everything still works.
            assertEquals(before, q.perplexity(TestSupport.STORY, eval()).perplexity(), 0.0);
            try (Session s = q.newSession()) {
                GenerationResult g = s.generate(q.tokenizer().encode("Once upon a time"), GenerationOptions.greedy(8),
                        null);
                assertTrue(g.tokens().length > 0);
                assertThrows(IllegalStateException.class, q::close); // its session is open
            }
            IllegalStateException engineBusy = assertThrows(IllegalStateException.class, e::close);
            assertTrue(engineBusy.getMessage().contains("model"), engineBusy.getMessage());
            q.close();
            assertThrows(IllegalStateException.class, () -> q.perplexity(TestSupport.STORY, eval()));
        }
    }
}

package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.HexFormat;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Loading stories260K and what the model reports, checked against the file itself. */
class ModelTest {
    static Path path;
    static Engine engine;
    static Model model;

    @BeforeAll
    static void load() {
        path = TestSupport.storiesModel();
        engine = Engine.cpu(2);
        model = Model.load(engine, path);
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

    @Test
    void infoMatchesTheGgufHeader() throws Exception {
        GgufMetadata gguf = new GgufMetadata(path);
        ModelInfo info = model.info();
        String arch = gguf.string("general.architecture");
        assertEquals(arch, info.architecture());
        assertEquals(gguf.version, info.ggufVersion());
        assertEquals(gguf.integer(arch + ".context_length"), info.contextLength());
        assertEquals(gguf.integer(arch + ".embedding_length"), info.embeddingLength());
        assertEquals(gguf.integer(arch + ".block_count"), info.layerCount());
        assertEquals(gguf.integer(arch + ".feed_forward_length"), info.feedForwardLength());
        assertEquals(gguf.integer(arch + ".attention.head_count"), info.headCount());
        assertEquals(gguf.integer(arch + ".attention.head_count_kv"), info.kvHeadCount());
        assertEquals(info.embeddingLength() / info.headCount(), info.headDim());
        assertEquals(gguf.arrayLength("tokenizer.ggml.tokens"), info.vocabSize());
        assertEquals(gguf.string("tokenizer.ggml.model"), info.tokenizerModel());
        assertEquals(gguf.integer("tokenizer.ggml.bos_token_id"), info.bosId());
        assertEquals(gguf.integer("tokenizer.ggml.eos_token_id"), info.eosId());
        assertEquals(gguf.parameterCount, info.parameterCount());
        assertEquals(Files.size(path), info.fileBytes());
        // stories260K: the facts of the published model, as a second, human-readable reference.
        assertEquals("llama", info.architecture());
        assertEquals(512, info.vocabSize());
        assertEquals(5, info.layerCount());
        assertEquals(64, info.embeddingLength());
        assertEquals("F32", info.weightTypes());
    }

    @Test
    void fingerprintIsTheSha256OfTheFile() throws Exception {
        String expected = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(Files.readAllBytes(path)));
        assertEquals(expected, model.fingerprint());
    }

    @Test
    void encodeDecodeRoundTrip() {
        Tokenizer tok = model.tokenizer();
        String text = "Once upon a time, there was a little girl named Lily. She was 3 years old!";
        int[] ids = tok.encode(text, Bos.NO);
        assertTrue(ids.length > 5 && ids.length < text.length(), Arrays.toString(ids));
        assertEquals(text, tok.decode(ids));
        int[] withBos = tok.encode(text, Bos.YES);
        assertEquals(model.info().bosId(), withBos[0]);
        assertArrayEquals(ids, Arrays.copyOfRange(withBos, 1, withBos.length));
        // The model's default adds BOS (add_bos is true for this model).
        assertArrayEquals(model.info().addBos() ? withBos : ids, tok.encode(text));
        // BOS is a control token: it produces no text.
        assertEquals(text, tok.decode(withBos));
        assertEquals(0, tok.encode("", Bos.NO).length);
    }

    @Test
    void encodeHandlesNonAsciiWithoutLoss() {
        Tokenizer tok = model.tokenizer();
        String text = "caf\u00e9 \u00fcber na\u00efve \u4e16\u754c";
        // stories260K has byte fallback tokens: any UTF-8 survives the round trip.
        assertEquals(text, tok.decode(tok.encode(text, Bos.NO)));
    }

    @Test
    void logitsAreFiniteAndShaped() {
        int[] ids = model.tokenizer().encode("Once upon a time", Bos.YES);
        float[] logits = model.logits(ids);
        assertEquals(ids.length * model.info().vocabSize(), logits.length);
        for (float v : logits) {
            assertTrue(Float.isFinite(v));
        }
        // Rows differ: each position sees a different prefix.
        int v = model.info().vocabSize();
        assertTrue(!Arrays.equals(logits, 0, v, logits, v, 2 * v));
    }

    @Test
    void sessionDecodeMatchesFullLogits() {
        int[] ids = model.tokenizer().encode("Once upon a time, there was a cat", Bos.YES);
        float[] full = model.logits(ids);
        int v = model.info().vocabSize();
        try (Session s = model.newSession(128)) {
            assertEquals(128, s.contextLength());
            // Feed the prompt in two pieces: the KV cache must give the same last rows as a full forward pass.
            int half = ids.length / 2;
            float[] a = s.decode(Arrays.copyOfRange(ids, 0, half));
            float[] b = s.decode(Arrays.copyOfRange(ids, half, ids.length));
            assertEquals(ids.length, s.position());
            // Same FP32 math in a different order of accumulation: allow a few ulps of the logits' scale.
            assertClose(Arrays.copyOfRange(full, (half - 1) * v, half * v), a, 1e-4f);
            assertClose(Arrays.copyOfRange(full, (ids.length - 1) * v, ids.length * v), b, 1e-4f);
            s.reset();
            assertEquals(0, s.position());
            assertClose(b, s.decode(ids), 1e-4f);
        }
    }

    static void assertClose(float[] expected, float[] actual, float tol) {
        assertEquals(expected.length, actual.length);
        for (int i = 0; i < expected.length; i++) {
            float bound = tol * Math.max(1f, Math.abs(expected[i]));
            assertTrue(Math.abs(expected[i] - actual[i]) <= bound,
                    "index " + i + ": expected " + expected[i] + ", got " + actual[i]);
        }
    }

    @Test
    void statusNamesAgreeWithTheLibrary() {
        for (int s = 0; s < Status.count(); s++) {
            assertEquals(FlatQuant.statusName(s), Status.name(s));
        }
        assertEquals("FQ_STATUS_UNKNOWN", FlatQuant.statusName(999));
        assertEquals(org.flatquant.bindings.flatquant_h.FQ_ABI_VERSION(), FlatQuant.abiVersion());
        assertTrue(!FlatQuant.version().isEmpty());
    }
}

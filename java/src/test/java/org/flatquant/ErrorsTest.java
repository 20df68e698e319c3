package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every bad input gets the exception type of its status, and closed objects throw instead of crashing. */
class ErrorsTest {
    static Path path;
    static Engine engine;
    static Model model;

    @TempDir
    Path tmp;

    @BeforeAll
    static void load() {
        path = TestSupport.storiesModel();
        engine = Engine.cpu(1);
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
    void missingFile() {
        NotFoundException e = assertThrows(NotFoundException.class,
                () -> Model.load(engine, tmp.resolve("nope.gguf")));
        assertEquals(Status.NOT_FOUND, e.status());
        assertEquals("FQ_STATUS_NOT_FOUND", e.statusName());
        assertTrue(e.getMessage().contains("nope.gguf"), e.getMessage());
    }

    @Test
    void truncatedCopies() throws Exception {
        byte[] bytes = Files.readAllBytes(path);
        // Cut inside the header, inside the metadata, and inside the tensor data.
        for (int keep : new int[] {10, 2000, bytes.length / 2, bytes.length - 1}) {
            Path cut = tmp.resolve("cut-" + keep + ".gguf");
            Files.write(cut, Arrays.copyOf(bytes, keep));
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> Model.load(engine, cut),
                    "truncated to " + keep + " bytes");
            assertEquals(Status.MODEL_FORMAT, e.status());
        }
    }

    @Test
    void notAGgufFile() throws Exception {
        Path text = tmp.resolve("story.gguf");
        Files.writeString(text, TestSupport.STORY);
        assertThrows(ModelFormatException.class, () -> Model.load(engine, text));
        Path empty = tmp.resolve("empty.gguf");
        Files.write(empty, new byte[0]);
        assertThrows(ModelFormatException.class, () -> Model.load(engine, empty));
        assertThrows(InvalidArgumentException.class, () -> Model.load(engine, tmp));
    }

    @Test
    void badPerplexityInputs() {
        assertThrows(InvalidArgumentException.class, () -> model.perplexity("", PerplexityOptions.defaults()));
        assertThrows(InvalidArgumentException.class, () -> PerplexityOptions.defaults().withSeqlen(0));
        assertThrows(InvalidArgumentException.class, () -> PerplexityOptions.defaults().withMaxChunks(0));
        int ctx = model.info().contextLength();
        InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                () -> model.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(ctx + 1)));
        assertTrue(e.getMessage().contains("context"), e.getMessage());
        // Shorter than one window: the native layer's own check.
        InvalidArgumentException shortText = assertThrows(InvalidArgumentException.class,
                () -> model.perplexity("Hi.", PerplexityOptions.defaults().withSeqlen(64)));
        assertEquals(Status.INVALID_ARGUMENT, shortText.status());
    }

    @Test
    void wrongTokenIds() {
        int v = model.info().vocabSize();
        assertThrows(InvalidArgumentException.class, () -> model.logits(new int[] {1, v}));
        assertThrows(InvalidArgumentException.class, () -> model.logits(new int[] {1, -1}));
        assertThrows(InvalidArgumentException.class, () -> model.logits(new int[0]));
        assertThrows(InvalidArgumentException.class,
                () -> model.logits(new int[model.info().contextLength() + 1]));
        assertThrows(InvalidArgumentException.class, () -> model.tokenizer().decode(new int[] {5, v}));
        assertThrows(InvalidArgumentException.class, () -> model.tokenizer().decode(new int[] {-7}));
        try (Session s = model.newSession(8)) {
            s.decode(new int[] {1, 2, 3});
            assertThrows(InvalidArgumentException.class, () -> s.decode(new int[] {4, v}));
            assertEquals(3, s.position()); // unchanged by the failed call
            assertThrows(InvalidArgumentException.class, () -> s.decode(new int[] {4, 5, 6, 7, 8, 9}));
            assertEquals(3, s.position()); // a full context leaves the session unchanged too
            assertThrows(InvalidArgumentException.class, () -> s.decode(new int[0]));
        }
        assertThrows(InvalidArgumentException.class, () -> model.newSession(0));
        assertThrows(InvalidArgumentException.class, () -> model.newSession(model.info().contextLength() + 1));
    }

    @Test
    void badOptions() {
        assertThrows(InvalidArgumentException.class, () -> GenerationOptions.greedy(0));
        assertThrows(InvalidArgumentException.class, () -> GenerationOptions.sampled(5, -1f, 1f, 0, 0));
        assertThrows(InvalidArgumentException.class, () -> GenerationOptions.sampled(5, 1f, 0f, 0, 0));
        assertThrows(InvalidArgumentException.class, () -> GenerationOptions.sampled(5, 1f, 1.5f, 0, 0));
        assertThrows(InvalidArgumentException.class, () -> GenerationOptions.sampled(5, 1f, 1f, -1, 0));
        assertThrows(InvalidArgumentException.class, () -> Engine.cpu(-1));
        try (Session s = model.newSession()) {
            assertThrows(InvalidArgumentException.class,
                    () -> s.generate(new int[0], GenerationOptions.greedy(3), null));
        }
    }

    @Test
    @SuppressWarnings("try") // closing inside try-with-resources is what is tested
    void closedObjectsThrowIllegalState() {
        try (Engine e = Engine.cpu(1)) {
            Model m = Model.load(e, path);
            Tokenizer tok = m.tokenizer();
            Session s = m.newSession();
            CancellationToken token = new CancellationToken();
            Sampler sampler = Sampler.greedy();

            // Parents refuse to close while children are open; nothing is freed then.
            IllegalStateException refused = assertThrows(IllegalStateException.class, m::close);
            assertTrue(refused.getMessage().contains("session"), refused.getMessage());
            assertThrows(IllegalStateException.class, e::close);
            assertEquals(512, m.info().vocabSize());

            s.close();
            s.close(); // idempotent
            assertThrows(IllegalStateException.class, () -> s.decode(new int[] {1}));
            assertThrows(IllegalStateException.class, s::position);
            assertThrows(IllegalStateException.class, s::reset);
            assertThrows(IllegalStateException.class,
                    () -> s.generate(new int[] {1}, GenerationOptions.greedy(2), null));

            m.close();
            m.close();
            assertThrows(IllegalStateException.class, m::info);
            assertThrows(IllegalStateException.class, m::tokenizer);
            assertThrows(IllegalStateException.class, m::fingerprint);
            assertThrows(IllegalStateException.class, m::newSession);
            assertThrows(IllegalStateException.class, () -> m.logits(new int[] {1}));
            assertThrows(IllegalStateException.class, () -> tok.encode("a", Bos.NO));
            assertThrows(IllegalStateException.class, () -> tok.decode(new int[] {1}));
            assertThrows(IllegalStateException.class,
                    () -> m.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(16)));

            token.close();
            token.close();
            assertThrows(IllegalStateException.class, token::cancel);
            assertThrows(IllegalStateException.class, token::isCancelled);

            sampler.close();
            assertThrows(IllegalStateException.class, () -> sampler.sample(new float[] {1f}));

            e.close();
            e.close();
            assertThrows(IllegalStateException.class, () -> Model.load(e, path));
        }
    }

    @Test
    void cudaWithoutADeviceIsDeviceUnavailable() {
        if (FlatQuant.cudaDeviceCount() > 0) {
            return; // GpuTest covers machines with a GPU
        }
        DeviceUnavailableException e = assertThrows(DeviceUnavailableException.class, () -> Engine.cuda(0));
        assertEquals(Status.DEVICE_UNAVAILABLE, e.status());
    }

    @Test
    void nativeStatusesMapToTheirTypes() {
        Object[][] cases = {
            {Status.INVALID_ARGUMENT, InvalidArgumentException.class},
            {Status.NOT_FOUND, NotFoundException.class},
            {Status.IO, NativeIoException.class},
            {Status.MODEL_FORMAT, ModelFormatException.class},
            {Status.UNSUPPORTED, UnsupportedInputException.class},
            {Status.OUT_OF_MEMORY, HostOutOfMemoryException.class},
            {Status.DEVICE_OUT_OF_MEMORY, DeviceOutOfMemoryException.class},
            {Status.DEVICE_UNAVAILABLE, DeviceUnavailableException.class},
            {Status.CUDA, CudaException.class},
            {Status.CANCELLED, CancelledException.class},
            {Status.BUSY, BusyException.class},
            {Status.NUMERIC, NumericException.class},
            {Status.INTERNAL, InternalException.class},
            {Status.BUFFER_TOO_SMALL, FlatQuantException.class},
            {99, FlatQuantException.class},
        };
        for (Object[] c : cases) {
            int status = (Integer) c[0];
            FlatQuantException e = FlatQuantException.of(status, "detail", 0, "");
            assertEquals(c[1], e.getClass());
            assertEquals(status, e.status());
            assertEquals(Status.name(status), e.statusName());
            assertEquals("detail", e.detail());
        }
        CudaException cuda = (CudaException) FlatQuantException.of(Status.CUDA, "launch failed", 700,
                "cudaErrorIllegalAddress");
        assertEquals(700, cuda.cudaError());
        assertEquals("cudaErrorIllegalAddress", cuda.cudaErrorName());
        assertEquals("launch failed (FQ_STATUS_CUDA, cudaErrorIllegalAddress)", cuda.getMessage());
    }
}

package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CUDA side as the Java API sees it on a machine with a GPU; skipped where fq_cuda_device_count() is 0. A CUDA
 * engine runs calibration and whole-sequence evaluation (logits, log-likelihood, perplexity) on its GPU, of
 * full-precision and quantized models alike. Sessions on a GPU run the FP16 and W4A4 engines, whose kernels need
 * head_dim 64 or 128: stories260K (head_dim 8) has no GPU session engine, so its sessions are refused there
 * (UNSUPPORTED) and run on a CPU engine (the GPU sessions of a real model are tested natively,
 * test_cuda_api_sessions.cpp). A device that is not there is refused as unavailable. Machines without a GPU check
 * DEVICE_UNAVAILABLE in ErrorsTest.
 */
@Tag("gpu")
class GpuTest {

    @BeforeEach
    void requireGpu() {
        TestSupport.requireNative();
        assumeTrue(FlatQuant.cudaDeviceCount() > 0, "no CUDA device (or a library built without CUDA)");
    }

    @Test
    void aMissingDeviceIsUnavailable() {
        assertTrue(FlatQuant.hasCuda());
        int n = FlatQuant.cudaDeviceCount();
        assertThrows(DeviceUnavailableException.class, () -> Engine.cuda(n).close());
    }

    @Test
    void wholeSequenceEvaluationRunsOnTheGpuAndSessionsAreRefused() {
        Path path = TestSupport.storiesModel();
        PerplexityOptions o = PerplexityOptions.defaults().withSeqlen(64);
        try (Engine cpu = Engine.cpu(); Model cm = Model.load(cpu, path);
             Engine gpu = Engine.cuda(0); Model gm = Model.load(gpu, path)) {
            assertTrue(gpu.isCuda());
            double expected = cm.perplexity(TestSupport.STORY, o).perplexity();
            // The GPU sums in another order: the same perplexity up to FP32 rounding.
            assertEquals(expected, gm.perplexity(TestSupport.STORY, o).perplexity(), 1e-4 * expected);
            int[] ids = cm.tokenizer().encode("Once upon a time");
            ModelTest.assertClose(cm.logits(ids), gm.logits(ids), 1e-3f);
            assertEquals("cuda-fp32", gm.info().evalEngine());
            assertEquals("", gm.info().sessionEngine());
            UnsupportedInputException e = assertThrows(UnsupportedInputException.class, gm::newSession);
            assertEquals(Status.UNSUPPORTED, e.status());
            assertTrue(e.getMessage().contains("head_dim 8"), e.getMessage());
        }
    }

    @Test
    void calibrationAndQuantizedModelsOnTheGpu(@TempDir Path tmp) {
        Path path = TestSupport.storiesModel();
        String text = WikiText.validation(TestSupport.dataDir()).substring(0, 20_000);
        Path artifact = tmp.resolve("gpu.fq");
        try (Engine gpu = Engine.cuda(0); Model m = Model.load(gpu, path)) {
            CalibrationResult r = Calibrator.builder().samples(4).seqlen(64).epochs(2).build()
                    .calibrate(m, text, artifact);
            assertTrue(r.onGpu());
            assertTrue(Double.isFinite(r.finalMse()) && r.finalMse() > 0);
            try (Model q = m.quantize(QuantizeOptions.artifact(artifact))) {
                double ppl = q.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(64))
                        .perplexity();
                assertTrue(Double.isFinite(ppl) && ppl > 1, "perplexity " + ppl);
                // The same artifact on the CPU: the same fake-quantized model, evaluated in another order.
                try (Engine cpu = Engine.cpu(); Model cm = Model.load(cpu, path);
                     Model cq = cm.quantize(QuantizeOptions.artifact(artifact))) {
                    double cpuPpl = cq.perplexity(TestSupport.STORY, PerplexityOptions.defaults().withSeqlen(64))
                            .perplexity();
                    assertEquals(cpuPpl, ppl, 1e-2 * cpuPpl);
                }
                assertThrows(UnsupportedInputException.class, q::newSession);
            }
        }
    }
}

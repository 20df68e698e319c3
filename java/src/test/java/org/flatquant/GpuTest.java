package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** The CUDA engine against the CPU engine; skipped where fq_cuda_device_count() is 0. */
@Tag("gpu")
class GpuTest {

    @BeforeEach
    void requireGpu() {
        TestSupport.requireNative();
        assumeTrue(FlatQuant.cudaDeviceCount() > 0, "no CUDA device (or a library built without CUDA)");
    }

    @Test
    void cudaLogitsMatchCpu() {
        try (Engine cpu = Engine.cpu(); Engine gpu = Engine.cuda(0);
             Model mc = Model.load(cpu, TestSupport.storiesModel());
             Model mg = Model.load(gpu, TestSupport.storiesModel())) {
            int[] ids = mc.tokenizer().encode(TestSupport.STORY, Bos.YES);
            ids = java.util.Arrays.copyOf(ids, 64);
            // Different kernels and accumulation order in FP32: agreement to 1e-3 of the logit scale.
            ModelTest.assertClose(mc.logits(ids), mg.logits(ids), 1e-3f);
            PerplexityOptions o = PerplexityOptions.defaults().withSeqlen(64);
            double pc = mc.perplexity(TestSupport.STORY, o).perplexity();
            double pg = mg.perplexity(TestSupport.STORY, o).perplexity();
            assertEquals(pc, pg, 1e-3 * pc);
            assertEquals(true, gpu.isCuda());
        }
    }
}

package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The CUDA side as the Java API sees it on a machine with a GPU; skipped where fq_cuda_device_count() is 0. The
 * full-precision engine runs on the CPU: a CUDA engine is refused for it (with the reason) until the quantized GPU
 * engine serves it, and a device that is not there is refused as unavailable.
 */
@Tag("gpu")
class GpuTest {

    @BeforeEach
    void requireGpu() {
        TestSupport.requireNative();
        assumeTrue(FlatQuant.cudaDeviceCount() > 0, "no CUDA device (or a library built without CUDA)");
    }

    @Test
    void devicesAreSeenAndMisuseIsRefusedWithTheRightException() {
        assertTrue(FlatQuant.hasCuda());
        int n = FlatQuant.cudaDeviceCount();
        assertThrows(DeviceUnavailableException.class, () -> Engine.cuda(n).close());
        UnsupportedInputException e = assertThrows(UnsupportedInputException.class, () -> Engine.cuda(0).close());
        assertTrue(e.getMessage().contains("quantized"), e.getMessage());
    }
}

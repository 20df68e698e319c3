package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import org.flatquant.bindings.flatquant_h;
import org.flatquant.bindings.fq_calibration_options;
import org.junit.jupiter.api.Test;

/** The quantization value types and the calibrator's options, checked on the Java side. */
class QuantTypesTest {

    @Test
    void schemesParseAndPrintCanonically() {
        assertEquals(new QuantScheme(4, 4, 4), QuantScheme.parse("w4a4kv4"));
        assertEquals(QuantScheme.W4A4KV4, QuantScheme.parse(" W4A4KV4 "));
        assertEquals(new QuantScheme(4, 16, 16), QuantScheme.parse("w4a16"));
        assertEquals(new QuantScheme(8, 8, 16), QuantScheme.parse("w8a8"));
        assertEquals("w4a4kv4", QuantScheme.W4A4KV4.toString());
        assertEquals("w4a16", QuantScheme.parse("w4a16kv16").toString());
        assertEquals("w4a8kv8", QuantScheme.parse("W4a8Kv8").toString());
        for (String bad : new String[] {"", "w4", "a4w4", "w4a4kv", "w4a4k4", "w4a4kv4x", "4a4", "w-4a4", "w4 a4",
                                        "w0004a4"}) {
            InvalidArgumentException e = assertThrows(InvalidArgumentException.class, () -> QuantScheme.parse(bad),
                    bad);
            assertTrue(e.getMessage().contains("expected w<bits>a<bits>[kv<bits>]"), e.getMessage());
        }
        for (String range : new String[] {"w1a4", "w4a9", "w4a4kv1", "w32a4", "w4a4kv12"}) {
            InvalidArgumentException e = assertThrows(InvalidArgumentException.class,
                    () -> QuantScheme.parse(range), range);
            assertTrue(e.getMessage().contains(range) && e.getMessage().contains("2 to 8"), e.getMessage());
        }
        assertThrows(InvalidArgumentException.class, () -> QuantScheme.parse(null));
    }

    @Test
    void methodsAndWeightQuantizers() {
        assertEquals(QuantMethod.FLATQUANT, QuantMethod.parse("FlatQuant"));
        assertEquals(QuantMethod.ROTATE, QuantMethod.parse("rotate"));
        assertEquals("rtn", QuantMethod.RTN.id());
        assertTrue(QuantMethod.FLATQUANT.needsArtifact());
        assertFalse(QuantMethod.ROTATE.needsArtifact());
        InvalidArgumentException e = assertThrows(InvalidArgumentException.class, () -> QuantMethod.parse("quarot"));
        assertTrue(e.getMessage().contains("'quarot'") && e.getMessage().contains("rtn, rotate or flatquant"));
        assertEquals(WeightQuantizer.GPTQ, WeightQuantizer.parse("GPTQ"));
        assertThrows(InvalidArgumentException.class, () -> WeightQuantizer.parse("awq"));
    }

    @Test
    void calibratorOptionsAreValidated() {
        Calibrator d = Calibrator.defaults();
        assertEquals(QuantScheme.W4A4KV4, d.quant());
        assertEquals(QuantMethod.FLATQUANT, d.method());
        assertEquals(WeightQuantizer.RTN, d.weights());
        assertEquals(128, d.samples());
        assertEquals(4, d.batch());
        assertTrue(d.needsText());
        // The batch follows a smaller sample count unless it was set.
        assertEquals(2, Calibrator.builder().samples(2).build().batch());
        assertEquals(2, Calibrator.builder().samples(8).batch(2).build().toBuilder().samples(2).build().batch());
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().samples(2).batch(3).build());
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().samples(0));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().seqlen(1));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().epochs(-1));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().lr(Double.NaN));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().lr(-1e-3));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().diagAlpha(1.5));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().percdamp(0));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().gptqBlockSize(0));
        assertThrows(InvalidArgumentException.class, () -> Calibrator.builder().quant("w4a4kv3x"));
        Calibrator rtn = Calibrator.builder().method(QuantMethod.RTN).build();
        assertFalse(rtn.needsText());
        assertTrue(rtn.toBuilder().weights(WeightQuantizer.GPTQ).build().needsText());
    }

    @Test
    void quantizeOptions() {
        QuantizeOptions a = QuantizeOptions.artifact(Path.of("a.fq"));
        assertNull(a.quant());
        assertNull(a.method());
        QuantizeOptions r = QuantizeOptions.of(QuantScheme.parse("w4a16"), QuantMethod.ROTATE).withSeed(7);
        assertEquals(7, r.seed());
        assertNull(r.artifact());
        assertThrows(InvalidArgumentException.class, () -> QuantizeOptions.artifact(null));
        assertThrows(InvalidArgumentException.class, () -> QuantizeOptions.of(null, QuantMethod.RTN));
    }

    /** The Java defaults are the library's: fq_calibration_options_init is the other, independent source. */
    @Test
    void javaDefaultsAreTheLibrarys() {
        TestSupport.requireNative();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment o = fq_calibration_options.allocate(arena);
            flatquant_h.fq_calibration_options_init(o);
            assertEquals(Calibrator.DEFAULT_SAMPLES, fq_calibration_options.nsamples(o));
            assertEquals(Calibrator.DEFAULT_SEQLEN, fq_calibration_options.seqlen(o));
            assertEquals(Calibrator.DEFAULT_BATCH, fq_calibration_options.batch(o));
            assertEquals(Calibrator.DEFAULT_EPOCHS, fq_calibration_options.epochs(o));
            assertEquals(Calibrator.DEFAULT_LR, fq_calibration_options.lr(o));
            assertEquals(Calibrator.DEFAULT_DIAG_ALPHA, fq_calibration_options.diag_alpha(o));
            assertEquals(Calibrator.DEFAULT_PERCDAMP, fq_calibration_options.percdamp(o));
            assertEquals(Calibrator.DEFAULT_GPTQ_BLOCK_SIZE, fq_calibration_options.gptq_blocksize(o));
            assertEquals(1, fq_calibration_options.add_diag(o));
            assertEquals(1, fq_calibration_options.lwc(o));
            assertEquals(1, fq_calibration_options.lac(o));
            assertEquals(0, fq_calibration_options.direct_inv(o));
            assertEquals(0, fq_calibration_options.seed(o));
            assertEquals(Bos.DEFAULT.code, fq_calibration_options.add_bos(o));
        }
    }
}

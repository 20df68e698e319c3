package org.flatquant;

import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.flatquant.bindings.fq_calibration_options;
import org.flatquant.bindings.fq_calibration_result;

/** The downcall of {@link Calibrator#calibrate}: the options struct, the upcalls, the token and the result. */
final class CalibrationCall {
    private CalibrationCall() {
    }

    /**
     * Runs fq_calibrate with the calibrator's settings; {@code base} (absolute, or null) is its base artifact and
     * {@code scheme}/{@code method} what the artifact will hold.
     */
    static CalibrationResult run(Calibrator c, Model model, String text, Path out, Path base, QuantScheme scheme,
                                 QuantMethod schemeMethod, CalibrationListener listener) {
        CancellationToken token = c.cancellation;
        if (token != null) {
            token.retain();
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment opts = fq_calibration_options.allocate(call);
            fq_calibration_options_init(opts);
            if (base == null || c.quantSet) {
                fq_calibration_options.quant(opts, call.allocateFrom(c.quant.toString()));
            }
            if (base == null || c.methodSet) {
                fq_calibration_options.method(opts, call.allocateFrom(c.method.id()));
            }
            if (base != null) {
                fq_calibration_options.base_artifact(opts, call.allocateFrom(base.toString()));
            }
            fq_calibration_options.weights(opts, call.allocateFrom(c.weights.id()));
            fq_calibration_options.nsamples(opts, c.samples);
            fq_calibration_options.seqlen(opts, c.seqlen);
            fq_calibration_options.batch(opts, c.batch);
            fq_calibration_options.epochs(opts, c.epochs);
            fq_calibration_options.lr(opts, c.lr);
            fq_calibration_options.diag_alpha(opts, c.diagAlpha);
            fq_calibration_options.add_diag(opts, c.smoothing ? 1 : 0);
            fq_calibration_options.lwc(opts, c.lwc ? 1 : 0);
            fq_calibration_options.lac(opts, c.lac ? 1 : 0);
            fq_calibration_options.direct_inv(opts, c.directInverse ? 1 : 0);
            fq_calibration_options.seed(opts, c.seed);
            fq_calibration_options.percdamp(opts, c.percdamp);
            fq_calibration_options.gptq_blocksize(opts, c.gptqBlockSize);
            fq_calibration_options.add_bos(opts, c.bos.code);
            Upcall upcall = Upcall.of(listener);
            if (upcall != null) {
                fq_calibration_options.progress(opts, upcall.progressStub(call));
                fq_calibration_options.log(opts, upcall.logStub(call));
            }
            if (token != null) {
                fq_calibration_options.cancel(opts, token.handle());
            }
            byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
            MemorySegment res = fq_calibration_result.allocate(call);
            fq_calibration_result_init(res);
            int status = fq_calibrate(model.handle(), Native.utf8(call, bytes), bytes.length,
                    call.allocateFrom(out.toString()), opts, res, err);
            if (upcall != null) {
                upcall.rethrow();
            }
            Native.check(status, err);
            return new CalibrationResult(out, scheme, schemeMethod, c.weights,
                    fq_calibration_result.on_gpu(res) != 0,
                    fq_calibration_result.n_layer(res),
                    fq_calibration_result.n_tokens(res),
                    fq_calibration_result.n_windows(res),
                    fq_calibration_result.final_mse(res),
                    fq_calibration_result.seconds(res));
        } finally {
            if (token != null) {
                token.release();
            }
        }
    }
}

package org.flatquant;

/**
 * Receives what a running {@link Calibrator#calibrate calibration} does, on the thread that called it: a
 * {@link CalibrationEvent} after every epoch of every layer, and progress reports for the stages
 * {@code "tokenize"}, {@code "calibrate"} (optimizer steps over all layers), {@code "gptq"} and {@code "save"}.
 *
 * <p>Either method may stop the calibration by returning false or by throwing; the calibration then ends within
 * one optimizer step, writes no artifact, and throws {@link CancelledException}, or rethrows the listener's
 * exception. Keep both quick: the calibration waits for them.
 *
 * <pre>{@code
 * CalibrationListener log = e -> {
 *     System.err.printf("layer %d/%d epoch %d/%d loss %.6f%n", e.layer() + 1, e.layerCount(), e.epoch(),
 *             e.epochCount(), e.mse());
 *     return true;
 * };
 * }</pre>
 *
 * @since 0.1
 */
@FunctionalInterface
public interface CalibrationListener extends ProgressListener {

    /**
     * One epoch of one layer is done.
     *
     * @param event the layer, the epoch and its loss; valid after the call too
     * @return true to continue, false to cancel
     */
    boolean onEpoch(CalibrationEvent event);

    /**
     * Progress of a stage; continues by default.
     *
     * @param stage {@code "tokenize"}, {@code "calibrate"}, {@code "gptq"} or {@code "save"}
     * @param done units finished so far
     * @param total units in all
     * @return true to continue, false to cancel
     */
    @Override
    default boolean onProgress(String stage, long done, long total) {
        return true;
    }
}

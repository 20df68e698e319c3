package org.flatquant;

/**
 * One line of the calibration log, reported after every epoch of every layer.
 *
 * @param layer the layer, 0-based
 * @param layerCount the model's layers
 * @param epoch the epoch, 1-based
 * @param epochCount the epochs per layer
 * @param mse the mean calibration loss (mean squared error between the full-precision and the quantized layer
 *     output) over the epoch's optimizer steps
 * @param lr the transforms' learning rate at the epoch's last step (the cosine schedule's value)
 * @param seconds the epoch's wall time
 * @since 0.1
 */
public record CalibrationEvent(int layer, int layerCount, int epoch, int epochCount, double mse, double lr,
                               double seconds) {

    /**
     * Whether this is the last epoch of the last layer.
     *
     * @return true for the final event of a calibration
     */
    public boolean isLast() {
        return layer == layerCount - 1 && epoch == epochCount;
    }
}

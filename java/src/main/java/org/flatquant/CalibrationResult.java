package org.flatquant;

import java.nio.file.Path;

/**
 * What {@link Calibrator#calibrate} did.
 *
 * @param artifact the calibration artifact written (an absolute path); pass it to
 *     {@link QuantizeOptions#artifact(Path)}
 * @param quant the bit widths it holds
 * @param method the method it holds
 * @param weights the weight quantizer it holds
 * @param onGpu whether the layers were calibrated on the engine's CUDA device
 * @param layerCount the model's layers
 * @param tokens tokens of the calibration text, 0 when the method needed no data
 * @param windows calibration windows used, 0 when the method needed no data
 * @param finalMse the mean over the layers of the last epoch's loss; 0 without training
 * @param seconds wall time of tokenization, calibration, weight quantization and saving
 * @since 0.1
 */
public record CalibrationResult(Path artifact, QuantScheme quant, QuantMethod method, WeightQuantizer weights,
                                boolean onGpu, int layerCount, long tokens, long windows,
                                double finalMse, double seconds) {
}

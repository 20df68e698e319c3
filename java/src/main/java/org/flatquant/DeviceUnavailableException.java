package org.flatquant;

/**
 * No usable GPU: none is present, the driver is missing or too old, or the library was built without CUDA.
 *
 * <p>Status {@code FQ_STATUS_DEVICE_UNAVAILABLE}.
 *
 * @since 0.1
 */
public class DeviceUnavailableException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public DeviceUnavailableException(String message) {
        super(Status.DEVICE_UNAVAILABLE, message, 0, "");
    }

    DeviceUnavailableException(String message, int cudaError, String cudaErrorName) {
        super(Status.DEVICE_UNAVAILABLE, message, cudaError, cudaErrorName);
    }
}

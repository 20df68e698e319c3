package org.flatquant;

/**
 * The GPU ran out of memory; {@link #cudaErrorName()} names the CUDA error.
 *
 * <p>Status {@code FQ_STATUS_DEVICE_OUT_OF_MEMORY}.
 *
 * @since 0.1
 */
public class DeviceOutOfMemoryException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public DeviceOutOfMemoryException(String message) {
        super(Status.DEVICE_OUT_OF_MEMORY, message, 0, "");
    }

    DeviceOutOfMemoryException(String message, int cudaError, String cudaErrorName) {
        super(Status.DEVICE_OUT_OF_MEMORY, message, cudaError, cudaErrorName);
    }
}

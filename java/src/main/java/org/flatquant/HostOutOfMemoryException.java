package org.flatquant;

/**
 * The native library ran out of host memory.
 *
 * <p>Status {@code FQ_STATUS_OUT_OF_MEMORY}.
 *
 * @since 0.1
 */
public class HostOutOfMemoryException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public HostOutOfMemoryException(String message) {
        super(Status.OUT_OF_MEMORY, message, 0, "");
    }

    HostOutOfMemoryException(String message, int cudaError, String cudaErrorName) {
        super(Status.OUT_OF_MEMORY, message, cudaError, cudaErrorName);
    }
}

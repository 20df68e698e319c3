package org.flatquant;

/**
 * Any other CUDA error; {@link #cudaError()} and {@link #cudaErrorName()} identify it (e.g. {@code cudaErrorIllegalAddress}).
 *
 * <p>Status {@code FQ_STATUS_CUDA}.
 *
 * @since 0.1
 */
public class CudaException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public CudaException(String message) {
        super(Status.CUDA, message, 0, "");
    }

    CudaException(String message, int cudaError, String cudaErrorName) {
        super(Status.CUDA, message, cudaError, cudaErrorName);
    }
}

package org.flatquant;

/**
 * The operation was cancelled, by a {@link CancellationToken} or by a listener that returned {@code false}.
 *
 * <p>Status {@code FQ_STATUS_CANCELLED}.
 *
 * @since 0.1
 */
public class CancelledException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public CancelledException(String message) {
        super(Status.CANCELLED, message, 0, "");
    }

    CancelledException(String message, int cudaError, String cudaErrorName) {
        super(Status.CANCELLED, message, cudaError, cudaErrorName);
    }
}

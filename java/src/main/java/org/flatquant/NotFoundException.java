package org.flatquant;

/**
 * A file that is not there.
 *
 * <p>Status {@code FQ_STATUS_NOT_FOUND}.
 *
 * @since 0.1
 */
public class NotFoundException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public NotFoundException(String message) {
        super(Status.NOT_FOUND, message, 0, "");
    }

    NotFoundException(String message, int cudaError, String cudaErrorName) {
        super(Status.NOT_FOUND, message, cudaError, cudaErrorName);
    }
}

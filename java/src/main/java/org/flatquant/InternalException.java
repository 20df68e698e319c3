package org.flatquant;

/**
 * A bug in the library; please report it with the message.
 *
 * <p>Status {@code FQ_STATUS_INTERNAL}.
 *
 * @since 0.1
 */
public class InternalException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public InternalException(String message) {
        super(Status.INTERNAL, message, 0, "");
    }

    InternalException(String message, int cudaError, String cudaErrorName) {
        super(Status.INTERNAL, message, cudaError, cudaErrorName);
    }
}

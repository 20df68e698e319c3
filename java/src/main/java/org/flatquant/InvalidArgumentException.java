package org.flatquant;

/**
 * An argument was out of range: a bad size, an option out of range, a token id outside the vocabulary, a call the object's state does not allow.
 *
 * <p>Status {@code FQ_STATUS_INVALID_ARGUMENT}.
 *
 * @since 0.1
 */
public class InvalidArgumentException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public InvalidArgumentException(String message) {
        super(Status.INVALID_ARGUMENT, message, 0, "");
    }

    InvalidArgumentException(String message, int cudaError, String cudaErrorName) {
        super(Status.INVALID_ARGUMENT, message, cudaError, cudaErrorName);
    }
}

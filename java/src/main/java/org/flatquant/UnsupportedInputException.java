package org.flatquant;

/**
 * A valid input this build does not handle: an architecture, tensor type or tokenizer it does not know.
 *
 * <p>Status {@code FQ_STATUS_UNSUPPORTED}.
 *
 * @since 0.1
 */
public class UnsupportedInputException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public UnsupportedInputException(String message) {
        super(Status.UNSUPPORTED, message, 0, "");
    }

    UnsupportedInputException(String message, int cudaError, String cudaErrorName) {
        super(Status.UNSUPPORTED, message, cudaError, cudaErrorName);
    }
}

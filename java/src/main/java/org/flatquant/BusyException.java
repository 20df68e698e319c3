package org.flatquant;

/**
 * The object serves one caller at a time and another call is in progress on it.
 *
 * <p>Status {@code FQ_STATUS_BUSY}.
 *
 * @since 0.1
 */
public class BusyException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public BusyException(String message) {
        super(Status.BUSY, message, 0, "");
    }

    BusyException(String message, int cudaError, String cudaErrorName) {
        super(Status.BUSY, message, cudaError, cudaErrorName);
    }
}

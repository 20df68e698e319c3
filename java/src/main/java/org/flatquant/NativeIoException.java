package org.flatquant;

/**
 * A read or write in the native library failed.
 *
 * <p>Status {@code FQ_STATUS_IO}.
 *
 * @since 0.1
 */
public class NativeIoException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public NativeIoException(String message) {
        super(Status.IO, message, 0, "");
    }

    NativeIoException(String message, int cudaError, String cudaErrorName) {
        super(Status.IO, message, cudaError, cudaErrorName);
    }
}

package org.flatquant;

/**
 * NaN or Inf in weights or results.
 *
 * <p>Status {@code FQ_STATUS_NUMERIC}.
 *
 * @since 0.1
 */
public class NumericException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public NumericException(String message) {
        super(Status.NUMERIC, message, 0, "");
    }

    NumericException(String message, int cudaError, String cudaErrorName) {
        super(Status.NUMERIC, message, cudaError, cudaErrorName);
    }
}

package org.flatquant;

/**
 * A model or artifact file is truncated, corrupt or inconsistent.
 *
 * <p>Status {@code FQ_STATUS_MODEL_FORMAT}.
 *
 * @since 0.1
 */
public class ModelFormatException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates the exception for an error found on the Java side.
     *
     * @param message what was wrong, naming the offending value
     */
    public ModelFormatException(String message) {
        super(Status.MODEL_FORMAT, message, 0, "");
    }

    ModelFormatException(String message, int cudaError, String cudaErrorName) {
        super(Status.MODEL_FORMAT, message, cudaError, cudaErrorName);
    }
}

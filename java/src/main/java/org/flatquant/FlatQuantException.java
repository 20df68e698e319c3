package org.flatquant;

/**
 * The base of every error the library reports: an unchecked exception that keeps the native status code
 * ({@code FQ_STATUS_*}) and its name, and for CUDA errors the {@code cudaError_t} value and name.
 *
 * <p>Each status has its own subclass (for example {@link ModelFormatException} for
 * {@code FQ_STATUS_MODEL_FORMAT}), so callers catch what they can handle and let the rest propagate. Errors the
 * Java side detects before calling into the library (a negative size, a closed object's child) use the same
 * subclasses; use of a closed object throws {@link IllegalStateException} instead.
 *
 * @since 0.1
 */
public class FlatQuantException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The {@code FQ_STATUS_*} code. */
    private final int status;
    /** The code's name. */
    private final String statusName;
    /** The message without the status suffix. */
    private final String detail;
    /** The {@code cudaError_t} value, or 0. */
    private final int cudaError;
    /** The CUDA error's name, or empty. */
    private final String cudaErrorName;

    FlatQuantException(int status, String detail, int cudaError, String cudaErrorName) {
        this(status, Status.name(status), detail, cudaError, cudaErrorName, null);
    }

    FlatQuantException(int status, String statusName, String detail, int cudaError, String cudaErrorName,
                       Throwable cause) {
        super(format(detail, statusName, cudaErrorName), cause);
        this.status = status;
        this.statusName = statusName;
        this.detail = detail;
        this.cudaError = cudaError;
        this.cudaErrorName = cudaErrorName == null ? "" : cudaErrorName;
    }

    private static String format(String detail, String statusName, String cudaErrorName) {
        String tag = cudaErrorName == null || cudaErrorName.isEmpty() ? statusName : statusName + ", " + cudaErrorName;
        return detail + " (" + tag + ")";
    }

    /**
     * The exception for a native status: the one place where status codes become exception types.
     *
     * @param status a {@code FQ_STATUS_*} value other than {@code FQ_STATUS_OK}
     * @param detail the message of the error record, or empty
     * @param cudaError the {@code cudaError_t} value, 0 when not a CUDA error
     * @param cudaErrorName the CUDA error's name, empty when not a CUDA error
     * @return the subclass for the status; a plain {@code FlatQuantException} for codes this version does not know
     */
    static FlatQuantException of(int status, String detail, int cudaError, String cudaErrorName) {
        String message = detail == null || detail.isEmpty() ? "native call failed" : detail;
        return switch (status) {
            case Status.INVALID_ARGUMENT -> new InvalidArgumentException(message, cudaError, cudaErrorName);
            case Status.NOT_FOUND -> new NotFoundException(message, cudaError, cudaErrorName);
            case Status.IO -> new NativeIoException(message, cudaError, cudaErrorName);
            case Status.MODEL_FORMAT -> new ModelFormatException(message, cudaError, cudaErrorName);
            case Status.UNSUPPORTED -> new UnsupportedInputException(message, cudaError, cudaErrorName);
            case Status.OUT_OF_MEMORY -> new HostOutOfMemoryException(message, cudaError, cudaErrorName);
            case Status.DEVICE_OUT_OF_MEMORY -> new DeviceOutOfMemoryException(message, cudaError, cudaErrorName);
            case Status.DEVICE_UNAVAILABLE -> new DeviceUnavailableException(message, cudaError, cudaErrorName);
            case Status.CUDA -> new CudaException(message, cudaError, cudaErrorName);
            case Status.CANCELLED -> new CancelledException(message, cudaError, cudaErrorName);
            case Status.BUSY -> new BusyException(message, cudaError, cudaErrorName);
            case Status.NUMERIC -> new NumericException(message, cudaError, cudaErrorName);
            case Status.INTERNAL -> new InternalException(message, cudaError, cudaErrorName);
            // BUFFER_TOO_SMALL never escapes (every caller sizes its buffers), so it has no type of its own; like
            // codes newer than this version it arrives as the base type, code and name intact.
            default -> new FlatQuantException(status, message, cudaError, cudaErrorName);
        };
    }

    /**
     * The native status code.
     *
     * @return a {@code FQ_STATUS_*} value
     */
    public int status() {
        return status;
    }

    /**
     * The status code's name.
     *
     * @return for example {@code "FQ_STATUS_MODEL_FORMAT"}
     */
    public String statusName() {
        return statusName;
    }

    /**
     * The message without the status suffix that {@link #getMessage()} adds.
     *
     * @return the error record's message, naming the problem
     */
    public String detail() {
        return detail;
    }

    /**
     * The CUDA error behind this one.
     *
     * @return the {@code cudaError_t} value, 0 when the error did not come from CUDA
     */
    public int cudaError() {
        return cudaError;
    }

    /**
     * The CUDA error's name.
     *
     * @return for example {@code "cudaErrorMemoryAllocation"}, empty when the error did not come from CUDA
     */
    public String cudaErrorName() {
        return cudaErrorName;
    }
}

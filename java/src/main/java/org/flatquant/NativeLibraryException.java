package org.flatquant;

/**
 * The native library could not be loaded, or the loaded one does not match these bindings.
 * The message lists every place that was tried and why each failed.
 *
 * <p>{@link #status()} is -1: this is not a status of the library.
 *
 * @since 0.1
 */
public class NativeLibraryException extends FlatQuantException {
    private static final long serialVersionUID = 1L;

    NativeLibraryException(String message, Throwable cause) {
        super(Status.NATIVE_LIBRARY, Status.name(Status.NATIVE_LIBRARY), message, 0, "", cause);
    }
}

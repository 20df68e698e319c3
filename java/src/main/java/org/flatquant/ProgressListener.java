package org.flatquant;

/**
 * Receives progress reports from a long operation, on the thread that called it.
 *
 * <p>Keep it quick: the operation waits for it. An exception thrown here cancels the operation and is rethrown
 * from it.
 *
 * @since 0.1
 */
@FunctionalInterface
public interface ProgressListener {
    /**
     * One step of progress.
     *
     * @param stage what is being done, e.g. {@code "tokenize"} or {@code "perplexity"}
     * @param done units finished so far (chunks, for perplexity)
     * @param total units in all; {@code done <= total}
     * @return true to continue, false to cancel (the operation then throws {@link CancelledException})
     */
    boolean onProgress(String stage, long done, long total);
}

package org.flatquant;

/**
 * Receives each generated token as soon as it is sampled, on the generating thread.
 *
 * @since 0.1
 */
@FunctionalInterface
public interface TokenListener {
    /**
     * One generated token.
     *
     * @param token the token id
     * @param text the new text it completes: may be empty while a multi-byte character is still incomplete, and
     *     may hold the end of an earlier token's character
     * @return true to continue, false to stop generating (the result then says {@code LISTENER})
     */
    boolean onToken(int token, String text);
}

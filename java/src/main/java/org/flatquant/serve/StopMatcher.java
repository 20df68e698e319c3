package org.flatquant.serve;

import java.util.List;

/**
 * Applies stop sequences to streamed text: pieces go in, text that is certainly not part of a stop sequence comes
 * out. The tail that could still become a stop sequence is held back until the next piece decides it, so a
 * streaming client never receives text the non-streaming answer would not contain.
 *
 * <p>The answer ends before the earliest occurrence of any stop sequence, as OpenAI defines it. Used by one
 * thread at a time.
 */
final class StopMatcher {
    private final List<String> stops;
    private final StringBuilder text = new StringBuilder();
    private int emitted;
    private boolean stopped;

    StopMatcher(List<String> stops) {
        for (String s : stops) {
            if (s.isEmpty()) {
                throw new IllegalArgumentException("empty stop sequence");
            }
        }
        this.stops = List.copyOf(stops);
    }

    /**
     * Adds a piece of generated text.
     *
     * @param piece the new text
     * @return the text that may now be emitted (possibly empty)
     */
    String push(String piece) {
        if (stopped) {
            return "";
        }
        int searchFrom = Math.max(0, emitted - longestStop() + 1);
        text.append(piece);
        int cut = -1;
        for (String s : stops) {
            int i = text.indexOf(s, searchFrom);
            if (i >= 0 && (cut < 0 || i < cut)) {
                cut = i;
            }
        }
        int end;
        if (cut >= 0) {
            stopped = true;
            end = Math.max(cut, emitted);
        } else {
            end = text.length() - heldBack();
        }
        String out = text.substring(emitted, Math.max(end, emitted));
        emitted = Math.max(end, emitted);
        return out;
    }

    /** Whether a stop sequence was found; the answer is then complete. */
    boolean stopped() {
        return stopped;
    }

    /**
     * Ends the stream without a stop sequence.
     *
     * @return the text held back so far
     */
    String flush() {
        if (stopped) {
            return "";
        }
        String out = text.substring(emitted);
        emitted = text.length();
        return out;
    }

    /** The length of the longest suffix of the text that is a proper prefix of some stop sequence. */
    private int heldBack() {
        int best = 0;
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, text.length()); k > best; k--) {
                if (endsWith(s, k)) {
                    best = k;
                    break;
                }
            }
        }
        return best;
    }

    /** Whether the text ends with the first {@code k} characters of {@code s}. */
    private boolean endsWith(String s, int k) {
        int off = text.length() - k;
        for (int i = 0; i < k; i++) {
            if (text.charAt(off + i) != s.charAt(i)) {
                return false;
            }
        }
        return true;
    }

    private int longestStop() {
        int n = 1;
        for (String s : stops) {
            n = Math.max(n, s.length());
        }
        return n;
    }
}

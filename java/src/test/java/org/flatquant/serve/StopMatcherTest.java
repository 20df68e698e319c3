package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Stop sequences over streamed pieces, against the definition applied to the whole text at once: the answer is
 * the text before the earliest occurrence of any stop sequence.
 */
class StopMatcherTest {

    /** The reference: cut the complete text at the earliest stop sequence. */
    static String reference(String text, List<String> stops) {
        int cut = text.length();
        for (String s : stops) {
            int i = text.indexOf(s);
            if (i >= 0) {
                cut = Math.min(cut, i);
            }
        }
        return text.substring(0, cut);
    }

    static String streamed(List<String> pieces, List<String> stops) {
        StopMatcher m = new StopMatcher(stops);
        StringBuilder out = new StringBuilder();
        for (String p : pieces) {
            out.append(m.push(p));
            if (m.stopped()) {
                return out.toString();
            }
        }
        return out.append(m.flush()).toString();
    }

    @Test
    void examples() {
        assertEquals("hello ", streamed(List.of("hel", "lo w", "orld"), List.of("world")));
        assertEquals("ab", streamed(List.of("a", "b", "c", "d"), List.of("cd", "bcx")));
        assertEquals("abcd", streamed(List.of("ab", "cd"), List.of("cdx")), "a partial match is released at the end");
        assertEquals("", streamed(List.of("stop"), List.of("stop")));
        assertEquals("x", streamed(List.of("x\nuser: hi"), List.of("\nuser:")));
    }

    @Test
    void heldBackTextIsOnlyWhatCouldStillStartAStop() {
        StopMatcher m = new StopMatcher(List.of("<end>"));
        assertEquals("abc", m.push("abc<e"), "'<e' may be the start of '<end>'");
        assertEquals("<ex", m.push("x"), "'<ex' cannot be");
        assertEquals("", m.push("<en"));
        assertEquals("", m.push("d>tail"));
        assertTrue(m.stopped());
        assertEquals("", m.push("more"));
        assertEquals("", m.flush());
    }

    @Test
    void anySplitOfAnyTextMatchesTheReference() {
        Random rnd = new Random(20250101);
        String alphabet = "ab\n:";
        for (int trial = 0; trial < 5000; trial++) {
            StringBuilder text = new StringBuilder();
            int n = rnd.nextInt(30);
            for (int i = 0; i < n; i++) {
                text.append(alphabet.charAt(rnd.nextInt(alphabet.length())));
            }
            List<String> stops = switch (trial % 3) {
                case 0 -> List.of("ab");
                case 1 -> List.of("\na:", "bb");
                default -> List.of("aba", "b\n", "a:b:");
            };
            List<String> pieces = new java.util.ArrayList<>();
            int pos = 0;
            while (pos < text.length()) {
                int len = 1 + rnd.nextInt(4);
                pieces.add(text.substring(pos, Math.min(text.length(), pos + len)));
                pos += len;
            }
            assertEquals(reference(text.toString(), stops), streamed(pieces, stops), text + " " + stops);
        }
    }

    @Test
    void noStopsPassesEverythingThrough() {
        StopMatcher m = new StopMatcher(List.of());
        assertEquals("abc", m.push("abc"));
        assertFalse(m.stopped());
        assertEquals("", m.flush());
    }
}

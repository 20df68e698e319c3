package org.flatquant.eval;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The few Python {@code str} operations that lm-evaluation-harness applies to task text, with Python's exact
 * semantics: lengths count code points (not UTF-16 units), and whitespace is what {@code str.isspace()} accepts,
 * which is wider than {@link Character#isWhitespace(int)} (it includes U+00A0, U+2007, U+202F and U+0085).
 */
final class PyText {
    private PyText() {
    }

    /** Python's {@code str.isspace()} for one code point: Unicode category Zs, or bidi class WS, B or S. */
    static boolean isSpace(int cp) {
        if (cp == ' ' || (cp >= '\t' && cp <= '\r') || (cp >= 0x1C && cp <= 0x1F) || cp == 0x85 || cp == 0xA0) {
            return true;
        }
        if (cp < 0x1680) {
            return false;
        }
        return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F
                || cp == 0x205F || cp == 0x3000;
    }

    /** {@code s.strip()}. */
    static String strip(String s) {
        return rstrip(lstrip(s));
    }

    /** {@code s.lstrip()}. */
    static String lstrip(String s) {
        int i = 0;
        while (i < s.length()) {
            int cp = s.codePointAt(i);
            if (!isSpace(cp)) {
                break;
            }
            i += Character.charCount(cp);
        }
        return s.substring(i);
    }

    /** {@code s.rstrip()}. */
    static String rstrip(String s) {
        int end = s.length();
        while (end > 0) {
            int cp = s.codePointBefore(end);
            if (!isSpace(cp)) {
                break;
            }
            end -= Character.charCount(cp);
        }
        return s.substring(0, end);
    }

    /** {@code len(s)}: code points. */
    static int len(String s) {
        return s.codePointCount(0, s.length());
    }

    /**
     * {@code s.capitalize()} (Python 3.8+): the first character in title case, the rest in lower case.
     */
    static String capitalize(String s) {
        if (s.isEmpty()) {
            return s;
        }
        int first = s.codePointAt(0);
        int n = Character.charCount(first);
        String rest = s.substring(n).toLowerCase(Locale.ROOT);
        // Python uses the full title-case mapping, which expands a few characters ("ß" -> "Ss", "ﬁ" -> "Fi");
        // Character.toTitleCase maps one code point only, so expansions are rebuilt from the full upper case.
        String upper = new String(Character.toChars(first)).toUpperCase(Locale.ROOT);
        if (upper.codePointCount(0, upper.length()) > 1) {
            int head = upper.codePointAt(0);
            String tail = upper.substring(Character.charCount(head)).toLowerCase(Locale.ROOT);
            return new StringBuilder(s.length() + 2).appendCodePoint(head).append(tail).append(rest).toString();
        }
        return new StringBuilder(s.length()).appendCodePoint(Character.toTitleCase(first)).append(rest).toString();
    }

    /** {@code s.split(sep)} for a non-empty separator: every occurrence splits, empty pieces are kept. */
    static List<String> split(String s, String sep) {
        List<String> out = new ArrayList<>();
        int from = 0;
        int at;
        while ((at = s.indexOf(sep, from)) >= 0) {
            out.add(s.substring(from, at));
            from = at + sep.length();
        }
        out.add(s.substring(from));
        return out;
    }
}

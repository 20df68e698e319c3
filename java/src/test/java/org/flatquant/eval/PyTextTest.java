package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Python str semantics; the expected values were printed by CPython 3.11. */
class PyTextTest {
    @Test
    void isSpaceIsPythonsSet() {
        // [c for c in range(0x110000) if chr(c).isspace()] in CPython 3.11:
        int[] spaces = {0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001,
            0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f,
            0x3000};
        int count = 0;
        for (int cp = 0; cp < 0x110000; cp++) {
            if (PyText.isSpace(cp)) {
                assertEquals(spaces[count], cp);
                count++;
            }
        }
        assertEquals(spaces.length, count);
        assertFalse(PyText.isSpace(0x200b)); // zero-width space is not whitespace in Python
    }

    @Test
    void stripLengthSplit() {
        assertEquals("a b", PyText.strip("\u00a0\t a b \u3000\n"));
        assertEquals(" a", PyText.rstrip(" a \u2009"));
        assertEquals("a ", PyText.lstrip("\u0085a "));
        assertEquals(3, PyText.len("a\uD83D\uDE00b")); // len("a😀b") == 3
        assertEquals(List.of("", "a", "", "b", ""), PyText.split(" a  b ", " "));
        assertEquals(List.of("abc"), PyText.split("abc", " "));
    }

    @Test
    void capitalizeIsPythons() {
        // str.capitalize() outputs from CPython 3.11.
        assertEquals("The lady", PyText.capitalize("the lady"));
        assertEquals("Ssa", PyText.capitalize("\u00dfa"));
        assertEquals("Mixed case", PyText.capitalize("mIXed CASE"));
        assertEquals("", PyText.capitalize(""));
        assertEquals("\u00c9lan vital", PyText.capitalize("\u00e9lan Vital"));
        assertEquals("1 a guy", PyText.capitalize("1 a guy"));
        assertTrue(PyText.capitalize("\u01c6a").startsWith("\u01c5")); // dž -> title case Dž, not upper DŽ
    }
}

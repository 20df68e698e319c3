package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JsonReaderTest {
    @Test
    void values() {
        Map<String, Object> m = JsonReader.parseObject(
                "{\"a\": [1, -2.5e1, true, false, null], \"s\": \"q\\\"\\\\\\/\\n\\u00e9\\ud83d\\ude00\", \"o\": {}}");
        assertEquals(List.of(1L, -25.0, true, false), ((List<?>) m.get("a")).subList(0, 4));
        assertNull(((List<?>) m.get("a")).get(4));
        assertEquals("q\"\\/\n\u00e9\uD83D\uDE00", m.get("s"));
        assertEquals(Map.of(), m.get("o"));
    }

    @Test
    void malformed() {
        for (String bad : new String[] {"{", "{\"a\" 1}", "[1,]", "\"\n\"", "{} x", "tru", "-", "\"\\x\""}) {
            assertThrows(IllegalArgumentException.class, () -> JsonReader.parse(bad), bad);
        }
    }
}

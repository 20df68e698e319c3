package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The request reader and response writer against hand-written JSON texts (RFC 8259). */
class JsonTest {

    @Test
    void readsEveryKindOfValue() throws Exception {
        Object v = Json.parse(" {\"s\": \"a\\\"b\\\\c\\/\\n\\u00e9\\ud83d\\ude00\", \"i\": -12, \"f\": 1.5e2, "
                + "\"t\": true, \"n\": null, \"a\": [1, [], {}], \"e\": {}} ");
        Map<?, ?> m = (Map<?, ?>) v;
        assertEquals("a\"b\\c/\n\u00e9\ud83d\ude00", m.get("s"));
        assertEquals(new BigDecimal("-12"), m.get("i"));
        assertEquals(0, new BigDecimal("150").compareTo((BigDecimal) m.get("f")));
        assertEquals(Boolean.TRUE, m.get("t"));
        assertSame(Json.NULL, m.get("n"));
        assertEquals(List.of(new BigDecimal(1), List.of(), Map.of()), m.get("a"));
        assertEquals(List.of("s", "i", "f", "t", "n", "a", "e"), List.copyOf(m.keySet()), "key order is kept");
    }

    @Test
    void refusesWhatIsNotJson() {
        for (String bad : List.of("", " ", "{", "{\"a\" 1}", "{\"a\": 1,}", "[1,]", "[1 2]", "01", "1.", ".5", "-",
                "1e", "+1", "tru", "nul", "'a'", "\"a", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"",
                "\"tab\there\"", "{\"a\": 1} x", "{\"a\": 1, \"a\": 2}", "NaN", "Infinity", "{1: 2}")) {
            assertThrows(Json.ParseException.class, () -> Json.parse(bad), bad);
        }
    }

    @Test
    void boundsNestingAndHugeExponents() throws Exception {
        String deep = "[".repeat(Json.MAX_DEPTH + 2) + "]".repeat(Json.MAX_DEPTH + 2);
        Json.ParseException e = assertThrows(Json.ParseException.class, () -> Json.parse(deep));
        assertTrue(e.getMessage().contains("nesting"), e.getMessage());
        String ok = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
        Json.parse(ok);
        assertThrows(Json.ParseException.class, () -> Json.parse("1e999999999"));
        char[] digits = new char[500];
        Arrays.fill(digits, '7');
        assertThrows(Json.ParseException.class, () -> Json.parse(new String(digits)));
    }

    @Test
    void writesCompactEscapedJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("text", "q\"b\\n\n\t\u0001\u2028é");
        m.put("int", 42);
        m.put("long", 1L << 40);
        m.put("double", 0.25);
        m.put("float", 1e-5f);
        m.put("nan", Double.NaN);
        m.put("null", null);
        m.put("jnull", Json.NULL);
        m.put("list", List.of(true, false, "x"));
        m.put("empty", Map.of());
        assertEquals("{\"text\":\"q\\\"b\\\\n\\n\\t\\u0001\\u2028é\",\"int\":42,\"long\":1099511627776,"
                + "\"double\":0.25,\"float\":1.0E-5,\"nan\":null,\"null\":null,\"jnull\":null,"
                + "\"list\":[true,false,\"x\"],\"empty\":{}}", Json.write(m));
    }

    @Test
    void writtenTextReadsBack() throws Exception {
        String s = "line\nwith \"quotes\", a tab\t, a control \u0007 and emoji \ud83d\ude00";
        assertEquals(s, Json.parse(Json.write(s)));
    }
}

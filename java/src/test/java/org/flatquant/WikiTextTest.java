package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/** The Hugging Face rows rebuilt from the raw split files, checked against the hashes in data/SOURCES.md. */
class WikiTextTest {

    static String sha256(String s) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(s.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void testSplitMatchesTheReferenceHash() throws Exception {
        String text = WikiText.test(TestSupport.dataDir());
        assertEquals(1_294_336, text.length());
        assertEquals("696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83", sha256(text));
    }

    @Test
    void validationSplitMatchesTheReferenceHash() throws Exception {
        String text = WikiText.validation(TestSupport.dataDir());
        assertEquals(1_149_668, text.length());
        assertEquals("b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e", sha256(text));
    }

    @Test
    void rowsFollowPythonSplitlinesAndStrip() {
        // Expected values written from Python's semantics:
        // [l if l.strip() else "" for l in s.splitlines(keepends=True)], joined with "\n\n".
        assertEquals("a\n\n\n\n\nb\n", WikiText.join("a\n \nb\n"));
        assertEquals("a\r\n\n\nb", WikiText.join("a\r\nb"));
        assertEquals("x\u0085\n\ny", WikiText.join("x\u0085y"));
        assertEquals("\n\n", WikiText.join("\u00a0\n\t\n"));       // NBSP is whitespace for Python
        assertEquals("\u200b\n", WikiText.join("\u200b\n"));      // ZERO WIDTH SPACE is not
        assertEquals("", WikiText.join(""));
        assertEquals("last", WikiText.join("last"));
    }

    @Test
    void missingSplitIsNotFound() {
        assertThrows(NotFoundException.class, () -> WikiText.test(Path.of("/nonexistent-dir")));
    }
}

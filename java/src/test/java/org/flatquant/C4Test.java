package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The C4 texts against Python's json module. The reference values come from
 * <pre>
 * python3 -c "import json, hashlib
 * docs = [json.loads(l)['text'] for l in open('data/c4/c4-train.00000-of-01024.first1000.jsonl', encoding='utf-8')]
 * t = ' '.join(docs[:1100]); print(len(docs), len(t), hashlib.sha256(t.encode()).hexdigest())"
 * </pre>
 * which printed {@code 1000 2190456 409f11b4...8ae8} (the GPTQ/FlatQuant construction, {@code ' '.join} of the
 * first 1100 documents, on the shipped train sample).
 */
class C4Test {
    static final String SAMPLE_SHA256 = "409f11b44890b5704864b9a38f4ad419440dfbfd91dd811b53b4e5d3a48a8ae8";

    @TempDir
    Path tmp;

    static String sha256(String s) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(s.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void evaluationTextOfTheShippedSampleMatchesPython() throws Exception {
        Path data = TestSupport.dataDir();
        assertEquals(data.resolve("c4").resolve(C4.TRAIN_SAMPLE_FILE), C4.evaluationFile(data));
        String text = C4.evaluationText(data);
        assertEquals(2_190_456, text.codePointCount(0, text.length())); // Python counts code points
        assertEquals(SAMPLE_SHA256, sha256(text));
        // The calibration text is every document of the same sample: the same 1000 documents here.
        assertEquals(text, C4.calibrationText(data));
        assertTrue(text.startsWith("Beginners BBQ Class Taking Place in Missoula!"), text.substring(0, 60));
    }

    @Test
    void theValidationShardIsPreferredAndGzipIsRead() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("c4"));
        Files.writeString(dir.resolve(C4.TRAIN_SAMPLE_FILE), "{\"text\": \"train\"}\n");
        assertEquals(dir.resolve(C4.TRAIN_SAMPLE_FILE), C4.evaluationFile(tmp));
        StringBuilder lines = new StringBuilder();
        for (int i = 0; i < 1200; i++) {
            // Escapes and a surrogate pair, decoded as Python's json decodes them.
            lines.append("{\"text\": \"doc ").append(i).append(" \\u00e9\\ud83d\\ude00\\n\", \"url\": \"u\"}\n");
        }
        try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(dir.resolve(C4.VALIDATION_FILE)))) {
            out.write(lines.toString().getBytes(StandardCharsets.UTF_8));
        }
        assertEquals(dir.resolve(C4.VALIDATION_FILE), C4.evaluationFile(tmp));
        String text = C4.evaluationText(tmp);
        assertTrue(text.startsWith("doc 0 \u00e9\uD83D\uDE00\n doc 1 "), text.substring(0, 20));
        assertTrue(text.endsWith("doc 1099 \u00e9\uD83D\uDE00\n"), text.substring(text.length() - 20));
        assertEquals(List.of("doc 0 \u00e9\uD83D\uDE00\n"), C4.documents(dir.resolve(C4.VALIDATION_FILE), 1));
    }

    @Test
    void missingAndMalformedFiles() throws Exception {
        assertThrows(NotFoundException.class, () -> C4.evaluationFile(tmp));
        Path bad = Files.writeString(tmp.resolve("bad.jsonl"), "{\"text\": \"ok\"}\n{\"url\": \"no text\"}\n");
        UncheckedIOException e = assertThrows(UncheckedIOException.class, () -> C4.documents(bad, 10));
        assertTrue(e.getMessage().contains("bad.jsonl:2"), e.getMessage());
        assertEquals(List.of("ok"), C4.documents(bad, 1));
    }
}

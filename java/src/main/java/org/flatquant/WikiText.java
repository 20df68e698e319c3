package org.flatquant;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The WikiText-2 evaluation text exactly as GPTQ, QuaRot and FlatQuant build it from the Hugging Face
 * {@code wikitext-2-raw-v1} rows: {@code "\n\n".join(rows)}, where the rows are the lines of the raw split file
 * with their line ends kept and whitespace-only lines replaced by {@code ""}.
 *
 * <p>For the test split this gives 1,294,336 characters with SHA-256
 * {@code 696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83}. Line splitting and whitespace follow
 * Python's {@code str.splitlines(keepends=True)} and {@code str.strip()}, which differ from Java's
 * {@code String.lines()} and {@code String.strip()} on a few characters (U+0085, U+00A0, U+001C..U+001E).
 *
 * @since 0.1
 */
public final class WikiText {
    /** The split files' directory inside the data directory. */
    public static final String DIRECTORY = "wikitext-2-raw";

    private WikiText() {
    }

    /**
     * The test split's evaluation text.
     *
     * @param dataDir the data directory holding {@code wikitext-2-raw/wiki.test.raw}
     * @return the joined rows
     * @throws NotFoundException when the file is missing
     */
    public static String test(Path dataDir) {
        return read(dataDir.resolve(DIRECTORY).resolve("wiki.test.raw"));
    }

    /**
     * The validation split's evaluation text.
     *
     * @param dataDir the data directory holding {@code wikitext-2-raw/wiki.valid.raw}
     * @return the joined rows
     * @throws NotFoundException when the file is missing
     */
    public static String validation(Path dataDir) {
        return read(dataDir.resolve(DIRECTORY).resolve("wiki.valid.raw"));
    }

    /**
     * Reads a raw split file (strict UTF-8) and joins its rows.
     *
     * @param splitFile a {@code wiki.*.raw} file
     * @return the joined rows
     * @throws NotFoundException when the file is missing
     * @throws UncheckedIOException when it cannot be read or is not UTF-8
     */
    public static String read(Path splitFile) {
        try {
            return join(Files.readString(splitFile, StandardCharsets.UTF_8));
        } catch (NoSuchFileException e) {
            throw new NotFoundException("WikiText split file not found: " + splitFile);
        } catch (CharacterCodingException e) {
            throw new UncheckedIOException("not UTF-8: " + splitFile, e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + splitFile + ": " + e.getMessage(), e);
        }
    }

    /**
     * Builds the rows of a raw split's text and joins them with {@code "\n\n"}.
     *
     * @param raw the content of a raw split file
     * @return the joined rows
     */
    public static String join(String raw) {
        List<String> rows = new ArrayList<>();
        int start = 0;
        int n = raw.length();
        int i = 0;
        while (i < n) {
            char c = raw.charAt(i);
            if (isLineBreak(c)) {
                int end = (c == '\r' && i + 1 < n && raw.charAt(i + 1) == '\n') ? i + 2 : i + 1;
                rows.add(row(raw, start, end));
                start = end;
                i = end;
            } else {
                i++;
            }
        }
        if (start < n) {
            rows.add(row(raw, start, n));
        }
        return String.join("\n\n", rows);
    }

    private static String row(String raw, int start, int end) {
        for (int i = start; i < end; i++) {
            if (!isPythonSpace(raw.charAt(i))) {
                return raw.substring(start, end);
            }
        }
        return "";
    }

    /** The line boundaries of Python's {@code str.splitlines}. */
    private static boolean isLineBreak(char c) {
        return switch (c) {
            case '\n', '\r', '\u000B', '\u000C', '\u001C', '\u001D', '\u001E', '\u0085', '\u2028', '\u2029' -> true;
            default -> false;
        };
    }

    /** Python's {@code str.isspace} for one UTF-16 unit (no whitespace lies outside the BMP). */
    private static boolean isPythonSpace(char c) {
        return switch (c) {
            case '\t', '\n', '\u000B', '\u000C', '\r', '\u001C', '\u001D', '\u001E', '\u001F', ' ', '\u0085',
                 '\u00A0', '\u1680', '\u2028', '\u2029', '\u202F', '\u205F', '\u3000' -> true;
            default -> c >= '\u2000' && c <= '\u200A';
        };
    }
}

package org.flatquant;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPInputStream;
import org.flatquant.eval.JsonReader;

/**
 * C4 ({@code allenai/c4}, English) texts as GPTQ, QuaRot and FlatQuant build them.
 *
 * <p>The perplexity set: the {@code "text"} fields of the first {@value #EVAL_DOCUMENTS} documents of
 * {@code en/c4-validation.00000-of-00008.json.gz}, joined with {@code " "}, tokenized once, and cut to
 * {@value #EVAL_WINDOWS} windows of {@code seqlen} tokens ({@link #EVAL_WINDOWS} is the chunk limit to pass to
 * {@link PerplexityOptions#withMaxChunks}). That shard is read from {@code <data>/c4/} when it is there
 * ({@value #VALIDATION_FILE}, gzip-compressed or not). Otherwise the text is built the same way from the sample
 * shipped in {@code data/c4} ({@value #TRAIN_SAMPLE_FILE}), which holds the first 1,000 documents of the
 * <em>train</em> shard {@code en/c4-train.00000-of-01024}: a stand-in of about the same size and kind, so its
 * perplexities are not the papers' C4 numbers; {@link #evaluationFile} says which file is used.
 *
 * <p>The calibration set: FlatQuant's {@code --cali_dataset c4} draws windows from random train documents of at
 * least {@code seqlen} tokens; here {@link #calibrationText} joins every document of the train sample with
 * {@code " "} and the calibration draws its windows from the whole joined text.
 *
 * @since 0.1
 */
public final class C4 {
    /** The C4 files' directory inside the data directory. */
    public static final String DIRECTORY = "c4";
    /** The validation shard the papers evaluate on (JSON lines, gzip-compressed as published). */
    public static final String VALIDATION_FILE = "c4-validation.00000-of-00008.json.gz";
    /** The shipped sample: the first 1,000 documents of the first train shard, as JSON lines. */
    public static final String TRAIN_SAMPLE_FILE = "c4-train.00000-of-01024.first1000.jsonl";
    /** Documents joined into the perplexity text. */
    public static final int EVAL_DOCUMENTS = 1100;
    /** Windows the perplexity evaluates (the text is cut to this many windows of seqlen tokens). */
    public static final int EVAL_WINDOWS = 256;

    private C4() {
    }

    /**
     * The file the perplexity text comes from: the validation shard when present, else the train sample.
     *
     * @param dataDir the data directory holding {@code c4/}
     * @return an existing file
     * @throws NotFoundException when neither exists
     */
    public static Path evaluationFile(Path dataDir) {
        Path dir = dataDir.resolve(DIRECTORY);
        String plain = VALIDATION_FILE.substring(0, VALIDATION_FILE.length() - ".gz".length());
        for (String name : new String[] {VALIDATION_FILE, plain, TRAIN_SAMPLE_FILE}) {
            Path p = dir.resolve(name);
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        throw new NotFoundException("no C4 file in " + dir + " (looked for " + VALIDATION_FILE + ", " + plain
                + " and " + TRAIN_SAMPLE_FILE + ")");
    }

    /**
     * The perplexity text: the first {@value #EVAL_DOCUMENTS} documents of {@link #evaluationFile} joined with a
     * space. Evaluate it with at most {@value #EVAL_WINDOWS} windows.
     *
     * @param dataDir the data directory holding {@code c4/}
     * @return the joined documents
     * @throws NotFoundException when no C4 file exists
     */
    public static String evaluationText(Path dataDir) {
        return String.join(" ", documents(evaluationFile(dataDir), EVAL_DOCUMENTS));
    }

    /**
     * The calibration text: every document of the train sample joined with a space.
     *
     * @param dataDir the data directory holding {@code c4/}{@value #TRAIN_SAMPLE_FILE}
     * @return the joined documents
     * @throws NotFoundException when the sample is missing
     */
    public static String calibrationText(Path dataDir) {
        return String.join(" ", documents(dataDir.resolve(DIRECTORY).resolve(TRAIN_SAMPLE_FILE), Integer.MAX_VALUE));
    }

    /**
     * The {@code "text"} fields of the first documents of a C4 JSON-lines file ({@code .gz} files are
     * decompressed), in file order.
     *
     * @param file one JSON object per line, each with a string field {@code "text"}
     * @param maxDocuments how many documents to read at most
     * @return the texts
     * @throws NotFoundException when the file is missing
     * @throws UncheckedIOException when it cannot be read, is not UTF-8, or a line is not such an object
     */
    public static List<String> documents(Path file, int maxDocuments) {
        List<String> texts = new ArrayList<>();
        try (InputStream raw = Files.newInputStream(file);
             InputStream in = file.getFileName().toString().endsWith(".gz") ? new GZIPInputStream(raw, 1 << 16) : raw;
             BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8.newDecoder()
                     .onMalformedInput(CodingErrorAction.REPORT)
                     .onUnmappableCharacter(CodingErrorAction.REPORT)))) {
            String line;
            int lineNo = 0;
            while (texts.size() < maxDocuments && (line = r.readLine()) != null) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                Object text;
                try {
                    Map<String, Object> doc = JsonReader.parseObject(line);
                    text = doc.get("text");
                } catch (IllegalArgumentException e) {
                    throw new UncheckedIOException(new IOException(file + ":" + lineNo + ": " + e.getMessage()));
                }
                if (!(text instanceof String s)) {
                    throw new UncheckedIOException(new IOException(file + ":" + lineNo
                            + ": no string field \"text\""));
                }
                texts.add(s);
            }
        } catch (NoSuchFileException e) {
            throw new NotFoundException("C4 file not found: " + file);
        } catch (CharacterCodingException e) {
            throw new UncheckedIOException("not UTF-8: " + file, e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
        return texts;
    }
}

package org.flatquant.cli;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import org.flatquant.C4;
import org.flatquant.NotFoundException;
import org.flatquant.WikiText;

/**
 * The texts a command line names: a plain file (read as UTF-8 as is), {@code wikitext2-test},
 * {@code wikitext2-validation} or {@code c4}, the named ones rebuilt from the data directory
 * ({@code -Dflatquant.data.dir}, default {@code ./data}).
 */
final class Texts {
    /** The names that are not files. */
    static final String NAMES = "wikitext2-test, wikitext2-validation or c4";

    /**
     * A text and where it came from.
     *
     * @param name the argument as given
     * @param content the text
     * @param file the file it was read from
     * @param maxChunks the windows the benchmark evaluates (C4: 256), or -1 for every full window
     */
    record Text(String name, String content, Path file, long maxChunks) {
    }

    private Texts() {
    }

    static Path dataDir() {
        return Path.of(System.getProperty("flatquant.data.dir", "data"));
    }

    /** A perplexity text; {@code c4} is the papers' C4 evaluation text, evaluated on at most 256 windows. */
    static Text forEvaluation(String arg) {
        return read(arg, false);
    }

    /** A calibration text; {@code c4} is the shipped C4 train sample. */
    static Text forCalibration(String arg) {
        return read(arg, true);
    }

    private static Text read(String arg, boolean calibration) {
        Path dataDir = dataDir();
        Text t;
        try {
            t = switch (arg) {
                case "wikitext2-test" -> new Text(arg, WikiText.test(dataDir), dataDir.resolve(WikiText.DIRECTORY)
                        .resolve("wiki.test.raw"), -1);
                case "wikitext2-validation" -> new Text(arg, WikiText.validation(dataDir),
                        dataDir.resolve(WikiText.DIRECTORY).resolve("wiki.valid.raw"), -1);
                case "c4" -> calibration
                        ? new Text(arg, C4.calibrationText(dataDir),
                                dataDir.resolve(C4.DIRECTORY).resolve(C4.TRAIN_SAMPLE_FILE), -1)
                        : new Text(arg, C4.evaluationText(dataDir), C4.evaluationFile(dataDir), C4.EVAL_WINDOWS);
                default -> new Text(arg, readFile(Path.of(arg)), Path.of(arg), -1);
            };
        } catch (NotFoundException e) {
            throw new Main.CliException(e.detail() + " (the data directory is -Dflatquant.data.dir, "
                    + "by default ./data of the working directory)");
        }
        if (t.content().isEmpty()) {
            throw new Main.CliException("the text is empty: " + arg);
        }
        return t;
    }

    private static String readFile(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new Main.CliException("text file not found: " + p);
        } catch (CharacterCodingException e) {
            throw new Main.CliException("text file is not valid UTF-8: " + p);
        } catch (IOException e) {
            throw new Main.CliException("cannot read text file " + p + ": " + e.getMessage());
        }
    }
}

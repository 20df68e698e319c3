package org.flatquant;

import static org.junit.jupiter.api.Assumptions.abort;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where the tests find the repository, its data and the native library, and how they skip (with a
 * reason) when something optional is missing.
 */
public final class TestSupport {
    private TestSupport() {
    }

    /** The repository root: -Dflatquant.repo.dir (set by the build), else the nearest parent with native/. */
    public static Path repoDir() {
        String p = System.getProperty("flatquant.repo.dir", "");
        if (!p.isBlank()) {
            return Path.of(p).toAbsolutePath().normalize();
        }
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.isDirectory(dir.resolve("native/include"))) {
            dir = dir.getParent();
        }
        if (dir == null) {
            throw new IllegalStateException("cannot find the repository root; set -Dflatquant.repo.dir");
        }
        return dir;
    }

    /** The data directory of the repository (WikiText). */
    public static Path dataDir() {
        String p = System.getProperty("flatquant.data.dir", "");
        return p.isBlank() ? repoDir().resolve("data") : Path.of(p);
    }

    /**
     * Makes sure the native library is loaded. When the build named a library (-Dflatquant.native.dir) a failure
     * fails the test; otherwise the test is skipped, saying why.
     */
    public static void requireNative() {
        String named = System.getProperty(NativeLibrary.LIBRARY_PATH_PROPERTY, "");
        try {
            NativeLibrary.load();
        } catch (NativeLibraryException e) {
            if (!named.isBlank()) {
                throw e;
            }
            abort("native library not available (build with -Dflatquant.native.dir=<dir of libflatquant.so>): "
                    + e.detail().lines().findFirst().orElse(""));
        }
    }

    /** The real tiny model stories260K.gguf; skips the test when it is absent. Loads the library too. */
    public static Path storiesModel() {
        requireNative();
        Path p = repoDir().resolve("data/models/stories260K.gguf");
        if (!Files.isRegularFile(p)) {
            abort("stories260K.gguf not found at " + p);
        }
        return p;
    }

    /**
     * SmolLM2-135M-Instruct (Q4_1 GGUF): -Dflatquant.smollm2.gguf, $FQ_SMOLLM2_GGUF, or the cache of ./flatquant;
     * skips the test when none exists. Loads the library too.
     */
    public static Path smolLm2Model() {
        requireNative();
        String cache = System.getenv().getOrDefault("FQ_CACHE", System.getProperty("user.home") + "/.cache/flatquant");
        for (String c : new String[] {System.getProperty("flatquant.smollm2.gguf", ""),
                                      System.getenv().getOrDefault("FQ_SMOLLM2_GGUF", ""),
                                      cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"}) {
            if (!c.isBlank() && Files.isRegularFile(Path.of(c))) {
                return Path.of(c);
            }
        }
        abort("SmolLM2-135M-Instruct GGUF not found (set -Dflatquant.smollm2.gguf)");
        return null;
    }

    /** A few hundred tokens of plain English, enough for several short perplexity windows. */
    public static final String STORY = """
            Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. \
            One day, she saw a big red ball in the park. She ran to the ball and kicked it very hard. \
            The ball went up into the sky and landed in a tree. Lily was sad because she could not reach it. \
            Her friend Tom came to help. He was tall and strong. Tom climbed the tree and got the ball. \
            Lily was very happy and said thank you to Tom. They played with the ball all day long. \
            When the sun went down, they went home to eat dinner with their moms and dads. \
            The next day, Lily and Tom went to the park again. They saw a little dog who was lost. \
            The dog was cold and hungry, so they gave it some of their bread. The dog wagged its tail. \
            They looked for the dog's family and found a kind old man who was looking for his pet. \
            The man smiled and thanked them. Lily and Tom felt proud because they helped the dog go home.
            """;
}

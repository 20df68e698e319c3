package org.flatquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.flatquant.NativeLibrary;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Ctrl-C during {@code flatquant calibrate}, for real: a child JVM runs a calibration that would take hours, gets
 * SIGINT once the first layer's epochs are reported, and must exit with status 130, say so, and leave neither the
 * artifact nor a temporary file.
 */
class CalibrateInterruptTest {
    @TempDir
    Path tmp;

    @Test
    void ctrlCCancelsAndLeavesNothingBehind() throws Exception {
        Path model = TestSupport.storiesModel();
        String lib = System.getProperty(NativeLibrary.LIBRARY_PATH_PROPERTY, "");
        assumeTrue(!lib.isBlank(), "needs -Dflatquant.library.path for the child JVM");
        assumeTrue(Files.isExecutable(Path.of("/bin/kill")), "needs /bin/kill to send SIGINT");
        Path classes = TestSupport.repoDir().resolve("java/target/classes");
        Path out = Files.createDirectories(tmp.resolve("out"));
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Dflatquant.library.path=" + lib,
                "-Dflatquant.data.dir=" + TestSupport.dataDir(), "-cp", classes.toString(), Main.class.getName(),
                "calibrate", "--model", model.toString(), "--out", out.resolve("a.fq").toString(), "--samples", "4",
                "--seqlen", "64", "--epochs", "100000", "--threads", "1")
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .start();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        InputStream in = p.getErrorStream();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        // Progress lines are redrawn with \r: wait for the first reported loss.
        while (!err.toString(StandardCharsets.UTF_8).contains("last loss")) {
            int b = in.read();
            assertTrue(b >= 0 && System.nanoTime() < deadline, "no progress: " + err);
            err.write(b);
        }
        Process kill = new ProcessBuilder("/bin/kill", "-INT", Long.toString(p.pid())).start();
        assertEquals(0, kill.waitFor());
        err.write(in.readAllBytes());
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the calibration did not stop");
        String log = err.toString(StandardCharsets.UTF_8);
        assertEquals(130, p.exitValue(), log);
        assertTrue(log.contains("error: calibration cancelled; " + out.resolve("a.fq").toAbsolutePath()
                + " was not written"), log);
        assertTrue(!log.contains("Exception"), log);
        assertEquals(List.of(), files(out), "no artifact and no temporary file");
    }

    static List<Path> files(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.toList();
        }
    }
}

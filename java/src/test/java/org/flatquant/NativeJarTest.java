package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The library packaged as the native jar is (the resource under its platform directory, Automatic-Module-Name
 * org.flatquant.natives), loaded by a fresh JVM from the class path and from the module path, with no
 * -Dflatquant.library.path; each JVM gets its own temporary directory, which must be empty after it exits.
 */
class NativeJarTest {
    @TempDir
    Path tmp;

    Path nativeJar;
    Path apiJar;

    @BeforeEach
    void packageTheLibrary() throws IOException {
        TestSupport.requireNative();
        String lib = System.getProperty(NativeLibrary.LIBRARY_PATH_PROPERTY, "");
        assumeTrue(!lib.isBlank(), "needs -Dflatquant.library.path (the build's library) to package");
        Path classes = TestSupport.repoDir().resolve("java/target/classes");
        assumeTrue(Files.isRegularFile(classes.resolve("module-info.class")), "no compiled API at " + classes);
        // The API as a modular jar of the compiled classes, without any library a stale build left among them.
        apiJar = tmp.resolve("flatquant.jar");
        try (JarOutputStream jar = new JarOutputStream(Files.newOutputStream(apiJar));
             Stream<Path> files = Files.walk(classes)) {
            for (Path f : files.filter(Files::isRegularFile).sorted().toList()) {
                String name = classes.relativize(f).toString().replace(File.separatorChar, '/');
                if (!name.startsWith("org/flatquant/native/")) {
                    jar.putNextEntry(new JarEntry(name));
                    Files.copy(f, jar);
                    jar.closeEntry();
                }
            }
        }
        Manifest mf = new Manifest();
        mf.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        mf.getMainAttributes().putValue("Automatic-Module-Name", NativeLibrary.NATIVE_MODULE);
        nativeJar = tmp.resolve("flatquant-native-linux.jar");
        try (JarOutputStream jar = new JarOutputStream(Files.newOutputStream(nativeJar), mf)) {
            jar.putNextEntry(new JarEntry(NativeLibrary.resourceName()));
            Files.copy(Path.of(lib), jar);
            jar.closeEntry();
        }
    }

    record Run(int status, String output, List<Path> leftInTmp) {
    }

    private Run java(String... args) throws Exception {
        Path jvmTmp = Files.createDirectories(tmp.resolve("jvm-tmp-" + System.nanoTime()));
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Djava.io.tmpdir=" + jvmTmp);
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the JVM did not exit");
        List<Path> left;
        try (Stream<Path> s = Files.list(jvmTmp)) {
            left = s.filter(f -> f.getFileName().toString().startsWith("flatquant-native-")).toList();
        }
        return new Run(p.exitValue(), out, left);
    }

    private void assertLoaded(Run r) {
        assertEquals(0, r.status, r.output);
        assertTrue(r.output.contains("flatquant " + FlatQuant.version()), r.output);
        assertEquals(List.of(), r.leftInTmp, "the extracted library was not deleted");
    }

    @Test
    void fromTheClassPath() throws Exception {
        assertLoaded(java("--enable-native-access=ALL-UNNAMED", "-cp", apiJar + File.pathSeparator + nativeJar,
                "org.flatquant.cli.Main", "--version"));
    }

    @Test
    void fromTheModulePathWithoutAddModules() throws Exception {
        // No module requires org.flatquant.natives, so it is not resolved: the loader finds it on the module path.
        assertLoaded(java("--enable-native-access=org.flatquant", "--module-path",
                apiJar + File.pathSeparator + nativeJar, "-m", "org.flatquant/org.flatquant.cli.Main",
                "--version"));
    }

    @Test
    void fromTheModulePathWithAddModules() throws Exception {
        assertLoaded(java("--enable-native-access=org.flatquant", "--module-path",
                apiJar + File.pathSeparator + nativeJar, "--add-modules", NativeLibrary.NATIVE_MODULE, "-m",
                "org.flatquant/org.flatquant.cli.Main", "--version"));
    }

    @Test
    void aLoadingModelOnTheModulePath() throws Exception {
        Run r = java("--enable-native-access=org.flatquant", "--module-path",
                apiJar + File.pathSeparator + nativeJar, "-m", "org.flatquant/org.flatquant.cli.Main", "info",
                "--model", TestSupport.storiesModel().toString(), "--json");
        assertEquals(0, r.status, r.output);
        assertTrue(r.output.contains("\"n_vocab\": 512"), r.output);
        assertEquals(List.of(), r.leftInTmp);
    }

    /** Without the native jar (and no library elsewhere) the error names every place tried. */
    @Test
    void withoutTheNativeJarTheErrorSaysWhere() throws Exception {
        Run r = java("--enable-native-access=org.flatquant", "-Djava.library.path=" + tmp, "--module-path",
                apiJar.toString(), "-m", "org.flatquant/org.flatquant.cli.Main", "--version");
        assertEquals(1, r.status, r.output);
        assertTrue(r.output.contains("not on the class path or the module path"), r.output);
        assertEquals(List.of(), r.leftInTmp);
    }
}

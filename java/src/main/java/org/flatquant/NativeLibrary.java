package org.flatquant;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.lang.module.FindException;
import java.lang.module.ModuleFinder;
import java.lang.module.ModuleReader;
import java.lang.module.ModuleReference;
import java.util.Locale;
import java.util.Optional;
import org.flatquant.bindings.flatquant_h;

/**
 * Loads libflatquant once per class loader and checks that it is the ABI these bindings were generated for.
 *
 * <p>Places, in order:
 * <ol>
 *   <li>the file named by the system property {@value #LIBRARY_PATH_PROPERTY}. When the property is set it is
 *       the only place tried: an explicit choice that fails is reported, not silently replaced;</li>
 *   <li>the jar resource {@code org/flatquant/native/<os>-<arch>/<libname>} of the native jar
 *       ({@code org.flatquant:flatquant-native:<version>:jar:<os>-<arch>}), found on the class path or the module
 *       path (there the native jar is the automatic module {@value #NATIVE_MODULE}; it need not be required or
 *       added), copied to a private temporary directory (a shared library cannot be mapped from inside a jar) and
 *       deleted again once loaded;</li>
 *   <li>{@code System.loadLibrary("flatquant")}, which searches {@code java.library.path}.</li>
 * </ol>
 * When every place fails, the {@link NativeLibraryException} lists each one with its reason. After loading,
 * {@code fq_abi_version()} must equal {@code FQ_ABI_VERSION} of the bindings.
 *
 * <p>The API calls {@link #load()} itself; call it directly only to fail early. This class is thread safe.
 *
 * @since 0.1
 */
public final class NativeLibrary {
    /** System property naming the library file to load instead of the packaged one. */
    public static final String LIBRARY_PATH_PROPERTY = "flatquant.library.path";

    private static final String NAME = "flatquant";

    /** Where the library came from; set once. Volatile so that {@link #load()} takes no lock once loaded. */
    private static volatile String location;
    private static NativeLibraryException failure;

    private NativeLibrary() {
    }

    /** Loads a library given a file path or, for {@code System.loadLibrary}, a bare name; throws on failure. */
    interface Loader {
        void load(String pathOrName, boolean isName);
    }

    /**
     * Loads the library unless it is loaded already.
     *
     * @throws NativeLibraryException when no place yields a loadable library, or its ABI version is not the one
     *     of these bindings; later calls throw the same error again
     */
    public static void load() {
        if (location == null) {
            loadOnce();
        }
    }

    private static synchronized void loadOnce() {
        if (location != null) {
            return;
        }
        if (failure != null) {
            throw new NativeLibraryException(failure.detail(), failure);
        }
        try {
            String where = find(System.getProperty(LIBRARY_PATH_PROPERTY), resourceName(), NativeLibrary::systemLoad);
            checkAbi(where);
            location = where;
        } catch (NativeLibraryException e) {
            failure = e;
            throw e;
        }
    }

    /**
     * Where the library was loaded from.
     *
     * @return a file path (for the jar resource: the path of the copy, which no longer exists, and the resource
     *     name), or {@code "java.library.path"}; loads the library first if needed
     */
    public static String location() {
        load();
        return location;
    }

    /**
     * The platform part of the resource path.
     *
     * @return for example {@code "linux-x86_64"}
     */
    public static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        String o = os.startsWith("linux") ? "linux" : os.startsWith("mac") ? "osx" : os.startsWith("windows")
                ? "windows" : os.replaceAll("[^a-z0-9]", "");
        String a = switch (arch) {
            case "amd64", "x86_64", "x64" -> "x86_64";
            case "aarch64", "arm64" -> "aarch64";
            default -> arch.replaceAll("[^a-z0-9_]", "");
        };
        return o + "-" + a;
    }

    static String resourceName() {
        return "org/flatquant/native/" + platform() + "/" + System.mapLibraryName(NAME);
    }

    /**
     * Tries the places in order and returns a description of the one that worked.
     *
     * @param property the value of {@value #LIBRARY_PATH_PROPERTY}, or null/blank when unset
     * @param resource the jar resource path of the library
     * @param loader performs the actual load
     */
    static String find(String property, String resource, Loader loader) {
        List<String> tried = new ArrayList<>();
        if (property != null && !property.isBlank()) {
            Path file = Path.of(property).toAbsolutePath();
            String why = tryFile(file, loader);
            if (why == null) {
                return file.toString();
            }
            tried.add("-D" + LIBRARY_PATH_PROPERTY + "=" + property + ": " + why);
            throw notFound(tried, null);
        }
        tried.add("-D" + LIBRARY_PATH_PROPERTY + ": not set");

        Throwable cause = null;
        try (InputStream in = openResource(resource)) {
            if (in == null) {
                tried.add("jar resource " + resource + ": not on the class path or the module path (no native jar for "
                        + platform() + ")");
            } else {
                Path file = extract(in, resource.substring(resource.lastIndexOf('/') + 1));
                String why;
                try {
                    why = tryFile(file, loader);
                } finally {
                    discard(file);
                }
                if (why == null) {
                    return file + " (extracted from the jar resource " + resource + ", deleted once loaded)";
                }
                tried.add("jar resource " + resource + " (copied to " + file + "): " + why);
            }
        } catch (IOException e) {
            tried.add("jar resource " + resource + ": could not copy it to a temporary directory: " + e);
            cause = e;
        }

        try {
            loader.load(NAME, true);
            return "java.library.path";
        } catch (UnsatisfiedLinkError e) {
            tried.add("System.loadLibrary(\"" + NAME + "\") with java.library.path="
                    + System.getProperty("java.library.path") + ": " + e.getMessage());
            if (cause == null) {
                cause = e;
            }
        }
        throw notFound(tried, cause);
    }

    /** The module name of the native jar on the module path ({@code Automatic-Module-Name} in its manifest). */
    public static final String NATIVE_MODULE = "org.flatquant.natives";

    /**
     * Opens the library resource, or returns null. {@code Class.getResourceAsStream} would search only this
     * class's own module once the API jar is on the module path, so the search goes through the class loader (class
     * path jars and every module it defines: the resource's directory is no valid package name, so no module
     * encapsulates it) and then, for a native jar on the module path that no module requires (it is then not
     * resolved), through a finder over {@code jdk.module.path}.
     */
    static InputStream openResource(String resource) throws IOException {
        ClassLoader cl = NativeLibrary.class.getClassLoader();
        InputStream in = cl == null ? ClassLoader.getSystemResourceAsStream(resource) : cl.getResourceAsStream(resource);
        if (in != null) {
            return in;
        }
        String modulePath = System.getProperty("jdk.module.path", "");
        if (modulePath.isBlank()) {
            return null;
        }
        List<Path> entries = new ArrayList<>();
        for (String e : modulePath.split(java.io.File.pathSeparator)) {
            if (!e.isBlank()) {
                entries.add(Path.of(e));
            }
        }
        Optional<ModuleReference> ref;
        try {
            ref = ModuleFinder.of(entries.toArray(Path[]::new)).find(NATIVE_MODULE);
        } catch (FindException e) {
            return null; // a broken entry elsewhere on the module path; the JVM itself reports those
        }
        if (ref.isEmpty()) {
            return null;
        }
        try (ModuleReader reader = ref.get().open()) {
            Optional<InputStream> found = reader.open(resource);
            if (found.isEmpty()) {
                return null;
            }
            // The reader's stream may not outlive the reader: copy it out.
            try (InputStream s = found.get()) {
                return new java.io.ByteArrayInputStream(s.readAllBytes());
            }
        }
    }

    /**
     * Copies the library into a fresh private directory: a shared library cannot be mapped from inside a jar.
     */
    private static Path extract(InputStream in, String fileName) throws IOException {
        Path dir = Files.createTempDirectory("flatquant-native-");
        Path file = dir.resolve(fileName);
        try {
            Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            discard(file);
            throw e;
        }
        return file;
    }

    /**
     * Deletes the extracted copy and its directory. On Linux and macOS a loaded library stays mapped after its file
     * is unlinked, so nothing is left in the temporary directory even when the JVM is killed later; where deleting a
     * loaded file fails (Windows), both are deleted at exit instead (the directory registered first: the exit hook
     * deletes in reverse order, the file before its directory).
     */
    static void discard(Path file) {
        Path dir = file.getParent();
        try {
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            dir.toFile().deleteOnExit();
            file.toFile().deleteOnExit();
        }
    }

    private static String tryFile(Path file, Loader loader) {
        if (!Files.isRegularFile(file)) {
            return "no such file";
        }
        try {
            loader.load(file.toString(), false);
            return null;
        } catch (UnsatisfiedLinkError e) {
            return e.getMessage();
        }
    }

    private static NativeLibraryException notFound(List<String> tried, Throwable cause) {
        StringBuilder sb = new StringBuilder("cannot load the native library libflatquant for ")
                .append(platform()).append("; tried:");
        for (String t : tried) {
            sb.append("\n  - ").append(t);
        }
        sb.append("\nBuild it with CMake and pass -D").append(LIBRARY_PATH_PROPERTY)
                .append("=/path/to/").append(System.mapLibraryName(NAME)).append(", or use a jar that contains it.");
        return new NativeLibraryException(sb.toString(), cause);
    }

    private static void systemLoad(String pathOrName, boolean isName) {
        // Called from this class so the library belongs to this class loader, whose loaderLookup() the
        // generated bindings use.
        if (isName) {
            System.loadLibrary(pathOrName);
        } else {
            System.load(pathOrName);
        }
    }

    private static void checkAbi(String where) {
        int expected = flatquant_h.FQ_ABI_VERSION();
        int actual;
        try {
            actual = flatquant_h.fq_abi_version();
        } catch (UnsatisfiedLinkError e) {
            throw new NativeLibraryException("the library loaded from " + where
                    + " does not export fq_abi_version: it is not libflatquant", e);
        }
        if (actual != expected) {
            throw new NativeLibraryException("the library loaded from " + where + " has ABI version " + actual
                    + " but these bindings were generated for FQ_ABI_VERSION " + expected
                    + "; use the library and the jar of the same build", null);
        }
    }
}

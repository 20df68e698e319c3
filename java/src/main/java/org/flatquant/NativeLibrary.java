package org.flatquant;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.flatquant.bindings.flatquant_h;

/**
 * Loads libflatquant once per class loader and checks that it is the ABI these bindings were generated for.
 *
 * <p>Places, in order:
 * <ol>
 *   <li>the file named by the system property {@value #LIBRARY_PATH_PROPERTY}. When the property is set it is
 *       the only place tried: an explicit choice that fails is reported, not silently replaced;</li>
 *   <li>the jar resource {@code org/flatquant/native/<os>-<arch>/<libname>}, copied to a temporary directory
 *       (a shared library cannot be mapped from inside a jar);</li>
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
     * @return a file path, or {@code "java.library.path"}; loads the library first if needed
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
        try (InputStream in = NativeLibrary.class.getResourceAsStream("/" + resource)) {
            if (in == null) {
                tried.add("jar resource " + resource + ": not on the class path (no native jar for "
                        + platform() + ")");
            } else {
                Path dir = Files.createTempDirectory("flatquant-native-");
                Path file = dir.resolve(resource.substring(resource.lastIndexOf('/') + 1));
                Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
                file.toFile().deleteOnExit();
                dir.toFile().deleteOnExit();
                String why = tryFile(file, loader);
                if (why == null) {
                    return file.toString();
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

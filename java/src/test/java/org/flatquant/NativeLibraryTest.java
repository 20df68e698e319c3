package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The loader's search order and its error message, with a fake loader (the real one may load only once). */
class NativeLibraryTest {

    @TempDir
    Path tmp;

    @Test
    void failureListsEveryPlaceTried() {
        List<String> attempts = new ArrayList<>();
        NativeLibrary.Loader failing = (what, isName) -> {
            attempts.add(what);
            throw new UnsatisfiedLinkError("fake: cannot load " + what);
        };
        NativeLibraryException e = assertThrows(NativeLibraryException.class,
                () -> NativeLibrary.find(null, "org/flatquant/native/none/libnothing.so", failing));
        String m = e.getMessage();
        assertTrue(m.contains("-Dflatquant.library.path: not set"), m);
        assertTrue(m.contains("jar resource org/flatquant/native/none/libnothing.so: not on the class path"), m);
        assertTrue(m.contains("System.loadLibrary(\"flatquant\")"), m);
        assertTrue(m.contains("fake: cannot load flatquant"), m);
        assertEquals(List.of("flatquant"), attempts);
        assertEquals(-1, e.status());
    }

    @Test
    void anExplicitPathIsTheOnlyPlaceTried() throws Exception {
        List<String> attempts = new ArrayList<>();
        NativeLibrary.Loader failing = (what, isName) -> {
            attempts.add(what);
            throw new UnsatisfiedLinkError("fake: wrong ELF class");
        };
        Path missing = tmp.resolve("libmissing.so");
        NativeLibraryException e = assertThrows(NativeLibraryException.class,
                () -> NativeLibrary.find(missing.toString(), NativeLibrary.resourceName(), failing));
        assertTrue(e.getMessage().contains(missing + ": no such file"), e.getMessage());
        assertTrue(attempts.isEmpty());

        Path present = Files.writeString(tmp.resolve("libbroken.so"), "not an ELF file");
        e = assertThrows(NativeLibraryException.class,
                () -> NativeLibrary.find(present.toString(), NativeLibrary.resourceName(), failing));
        assertTrue(e.getMessage().contains("fake: wrong ELF class"), e.getMessage());
        assertEquals(List.of(present.toAbsolutePath().toString()), attempts);
    }

    @Test
    void jarResourceIsCopiedAndLoaded() {
        // The test class path holds this resource (a text file standing in for a library).
        List<String> attempts = new ArrayList<>();
        String where = NativeLibrary.find("", "org/flatquant/test-native/libfake.so", (what, isName) -> {
            attempts.add(what);
        });
        assertEquals(1, attempts.size());
        assertTrue(where.endsWith("libfake.so") && !where.contains("test-native"), where);
        assertTrue(Files.isRegularFile(Path.of(where)));
    }

    @Test
    void platformNames() {
        assertTrue(NativeLibrary.platform().matches("[a-z0-9]+-[a-z0-9_]+"), NativeLibrary.platform());
        assertTrue(NativeLibrary.resourceName().startsWith("org/flatquant/native/" + NativeLibrary.platform() + "/"));
    }

    @Test
    void realLibraryLoadsWithTheRightAbi() {
        TestSupport.requireNative();
        assertEquals(org.flatquant.bindings.flatquant_h.FQ_ABI_VERSION(), FlatQuant.abiVersion());
        assertTrue(!NativeLibrary.location().isEmpty());
    }
}

package org.flatquant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
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
    void jarResourceIsCopiedLoadedAndDeleted() {
        // The test class path holds this resource (a text file standing in for a library).
        List<String> attempts = new ArrayList<>();
        List<Boolean> presentWhileLoading = new ArrayList<>();
        String where = NativeLibrary.find("", "org/flatquant/test-native/libfake.so", (what, isName) -> {
            attempts.add(what);
            presentWhileLoading.add(Files.isRegularFile(Path.of(what)));
        });
        assertEquals(1, attempts.size());
        assertEquals(List.of(true), presentWhileLoading);
        Path copy = Path.of(attempts.get(0));
        assertTrue(copy.getFileName().toString().equals("libfake.so") && !copy.toString().contains("test-native"),
                copy.toString());
        assertTrue(where.startsWith(copy.toString()) && where.contains("deleted once loaded"), where);
        // The copy and its private directory are gone once loaded: nothing piles up in the temporary directory.
        assertFalse(Files.exists(copy));
        assertFalse(Files.exists(copy.getParent()));
    }

    @Test
    void aCopyThatFailsToLoadIsDeletedToo() {
        List<String> attempts = new ArrayList<>();
        assertThrows(NativeLibraryException.class, () -> NativeLibrary.find("", "org/flatquant/test-native/libfake.so",
                (what, isName) -> {
                    attempts.add(what);
                    throw new UnsatisfiedLinkError("fake: cannot load " + what);
                }));
        assertEquals(2, attempts.size()); // the copy, then System.loadLibrary
        assertFalse(Files.exists(Path.of(attempts.get(0)).getParent()));
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

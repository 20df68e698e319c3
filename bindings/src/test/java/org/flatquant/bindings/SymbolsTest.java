package org.flatquant.bindings;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.Test;

/** Every function of the header has bindings, and every binding resolves in the built library. */
class SymbolsTest {

    /** Function names read from the header with a regular expression: independent of libclang. */
    static TreeSet<String> headerFunctions() throws Exception {
        String header = Files.readString(TestSupport.repoDir().resolve(BindingsStamp.HEADER));
        Matcher m = Pattern.compile("FQ_API\\s+[^;(]*?\\b(fq_\\w+)\\s*\\(").matcher(header);
        TreeSet<String> names = new TreeSet<>();
        while (m.find()) {
            names.add(m.group(1));
        }
        return names;
    }

    static List<Method> addressMethods() {
        List<Method> out = new ArrayList<>();
        for (Method m : flatquant_h.class.getDeclaredMethods()) {
            if (m.getName().endsWith("$address") && Modifier.isPublic(m.getModifiers())) {
                out.add(m);
            }
        }
        return out;
    }

    @Test
    void bindingsCoverTheHeader() throws Exception {
        TreeSet<String> bound = new TreeSet<>();
        for (Method m : addressMethods()) {
            bound.add(m.getName().substring(0, m.getName().length() - "$address".length()));
        }
        TreeSet<String> header = headerFunctions();
        assertFalse(header.isEmpty());
        assertEquals(header, bound, "functions in the header vs. in flatquant_h; regenerate with `"
                + BindingsStamp.REGENERATE + "`");
        assertEquals(header, new TreeSet<>(BindingsStamp.FUNCTIONS));
    }

    @Test
    void everyAddressResolvesInTheLibrary() throws Exception {
        TestSupport.requireNative();
        List<Method> methods = addressMethods();
        assertTrue(methods.size() >= 30, "only " + methods.size() + " functions found");
        for (Method m : methods) {
            MemorySegment addr = (MemorySegment) m.invoke(null);
            assertFalse(addr.equals(MemorySegment.NULL), m.getName() + " resolved to NULL");
            // Touching the handle builds the downcall from the descriptor: a malformed descriptor fails here.
            String fn = m.getName().substring(0, m.getName().length() - "$address".length());
            assertTrue(flatquant_h.class.getMethod(fn + "$handle").invoke(null) != null, fn);
        }
        assertEquals(0, flatquant_h.fq_noop());
    }
}

package org.flatquant.bindings;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.abort;

import java.lang.foreign.GroupLayout;
import java.lang.foreign.MemoryLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The C compiler's view of the header against the bindings: a probe program prints sizeof, _Alignof and
 * offsetof of every struct field and the value of every constant, and each must equal the Java layouts and
 * accessors. This does not use libclang, so it checks the generator too. Skipped where no C compiler is found.
 */
class LayoutProbeTest {

    @TempDir
    Path tmp;

    @Test
    void structLayoutsAndConstantsMatchTheCompiler() throws Exception {
        String cc = findCompiler();
        Map<String, Long> expected = new LinkedHashMap<>();
        StringBuilder c = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include \"flatquant.h\"\n")
                .append("int main(void) {\n");
        for (String s : BindingsStamp.STRUCTS) {
            GroupLayout layout = (GroupLayout) Class.forName("org.flatquant.bindings." + s)
                    .getMethod("layout").invoke(null);
            probe(c, s + " sizeof", "sizeof(struct " + s + ")");
            expected.put(s + " sizeof", layout.byteSize());
            probe(c, s + " alignof", "_Alignof(struct " + s + ")");
            expected.put(s + " alignof", layout.byteAlignment());
            long offset = 0;
            for (MemoryLayout m : layout.memberLayouts()) {
                if (m.name().isPresent()) {
                    String f = m.name().get();
                    probe(c, s + "." + f + " offset", "offsetof(struct " + s + ", " + f + ")");
                    expected.put(s + "." + f + " offset", offset);
                    probe(c, s + "." + f + " size", "sizeof(((struct " + s + " *)0)->" + f + ")");
                    expected.put(s + "." + f + " size", m.byteSize());
                }
                offset += m.byteSize();
            }
        }
        for (String k : BindingsStamp.CONSTANTS) {
            c.append("    printf(\"%s %lld\\n\", \"").append(k).append("\", (long long)(").append(k).append("));\n");
            expected.put(k, ((Number) flatquant_h.class.getMethod(k).invoke(null)).longValue());
        }
        c.append("    return 0;\n}\n");

        Path src = Files.writeString(tmp.resolve("probe.c"), c.toString());
        Path exe = tmp.resolve("probe");
        String include = TestSupport.repoDir().resolve("native/include").toString();
        run(cc, "-std=c11", "-Wall", "-Werror", "-I", include, src.toString(), "-o", exe.toString());
        String output = run(exe.toString());

        Map<String, Long> actual = new LinkedHashMap<>();
        for (String line : output.split("\n")) {
            int sp = line.lastIndexOf(' ');
            actual.put(line.substring(0, sp), Long.parseLong(line.substring(sp + 1)));
        }
        assertEquals(expected, actual, "the C compiler disagrees with the bindings; regenerate with `"
                + BindingsStamp.REGENERATE + "`");
    }

    private static void probe(StringBuilder c, String key, String expr) {
        c.append("    printf(\"%s %lld\\n\", \"").append(key).append("\", (long long)(").append(expr).append("));\n");
    }

    private static String findCompiler() {
        for (String cc : new String[] {System.getenv("CC"), "cc", "gcc", "clang"}) {
            if (cc == null || cc.isBlank()) {
                continue;
            }
            try {
                Process p = new ProcessBuilder(cc, "--version").redirectErrorStream(true).start();
                p.getInputStream().readAllBytes();
                if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
                    return cc;
                }
            } catch (Exception e) {
                // not installed: try the next name
            }
        }
        abort("no C compiler (cc, gcc, clang or $CC) to build the layout probe");
        return null;
    }

    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new AssertionError(String.join(" ", cmd) + " failed:\n" + out);
        }
        return out;
    }
}

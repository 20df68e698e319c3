package org.flatquant.bindings;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import org.flatquant.TestSupport;
import org.junit.jupiter.api.Test;

/** The committed bindings were generated from the header as it is now. */
class HeaderStampTest {

    @Test
    void headerIsUnchangedSinceGeneration() throws Exception {
        Path header = TestSupport.repoDir().resolve(BindingsStamp.HEADER);
        String actual = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(Files.readAllBytes(header)));
        assertEquals(BindingsStamp.HEADER_SHA256, actual, BindingsStamp.HEADER + " changed since the bindings "
                + "were generated: regenerate with `" + BindingsStamp.REGENERATE + "` from the repository root "
                + "and commit the result (see bindings/README.md)");
    }
}

package org.flatquant;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.flatquant.eval.JsonReader;

/**
 * The {@code __metadata__} of a calibration artifact (docs/artifact-format.md): a safetensors file whose first 8
 * bytes give the length of a JSON header, little-endian. Only read to name an artifact's scheme on the Java side;
 * the native reader validates everything else when the artifact is used.
 */
final class ArtifactHeader {
    /** Larger headers are refused: the metadata and the tensor table of a 100-layer model fit in far less. */
    private static final long MAX_HEADER_BYTES = 64L << 20;

    private ArtifactHeader() {
    }

    /**
     * The metadata strings.
     *
     * @throws NotFoundException when the file does not exist
     * @throws ModelFormatException when it is not a safetensors file with a JSON header and string metadata
     * @throws NativeIoException when it cannot be read
     */
    static Map<String, String> metadata(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            byte[] len = in.readNBytes(8);
            long n = len.length == 8 ? ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong() : -1;
            if (n < 2 || n > MAX_HEADER_BYTES || n > Files.size(file) - 8) {
                throw new ModelFormatException("not a calibration artifact (no safetensors header): " + file);
            }
            byte[] json = in.readNBytes((int) n);
            String text = StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(json)).toString();
            Object meta = JsonReader.parseObject(text).get("__metadata__");
            if (!(meta instanceof Map<?, ?> m)) {
                throw new ModelFormatException("the artifact has no __metadata__: " + file);
            }
            Map<String, String> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!(e.getValue() instanceof String v)) {
                    throw new ModelFormatException("the artifact's metadata " + e.getKey() + " is not a string: "
                            + file);
                }
                out.put((String) e.getKey(), v);
            }
            return out;
        } catch (NoSuchFileException e) {
            throw new NotFoundException("artifact not found: " + file);
        } catch (CharacterCodingException | IllegalArgumentException e) {
            throw new ModelFormatException("the artifact's header is not valid JSON: " + file + ": " + e.getMessage());
        } catch (IOException e) {
            throw new NativeIoException("cannot read the artifact " + file + ": " + e.getMessage());
        }
    }
}

package org.flatquant;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.Objects;

/**
 * The tokenizer of a {@link Model}: SentencePiece-style or byte-level BPE, as the model file says.
 *
 * <p>Thread safe, like its model; every method throws {@link IllegalStateException} once the model is closed.
 *
 * @since 0.1
 */
public final class Tokenizer {
    private final Model model;

    Tokenizer(Model model) {
        this.model = model;
    }

    /**
     * Tokenizes a text with the model's default BOS behaviour.
     *
     * @param text any text; it is tokenized as UTF-8
     * @return the token ids
     */
    public int[] encode(String text) {
        return encode(text, Bos.DEFAULT);
    }

    /**
     * Tokenizes a text.
     *
     * @param text any text; it is tokenized as UTF-8
     * @param bos whether a beginning-of-sequence token goes first
     * @return the token ids
     */
    public int[] encode(String text, Bos bos) {
        Objects.requireNonNull(text, "text");
        Objects.requireNonNull(bos, "bos");
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            long capacity = bytes.length + 2L; // the header's bound: one id per byte, plus BOS, plus one
            MemorySegment ids = call.allocate(JAVA_INT, capacity);
            MemorySegment n = call.allocate(C_LONG_LONG);
            Native.check(fq_model_tokenize(model.handle(), Native.utf8(call, bytes), bytes.length, bos.code, ids,
                    capacity, n, err), err);
            return ids.asSlice(0, n.get(C_LONG_LONG, 0) * Integer.BYTES).toArray(JAVA_INT);
        }
    }

    /**
     * Turns ids back into text. BOS, EOS and other control tokens produce no text.
     *
     * @param tokens ids in {@code [0, vocabSize)}
     * @return the text; byte sequences that are not valid UTF-8 become U+FFFD
     * @throws InvalidArgumentException for an id outside the vocabulary
     */
    public String decode(int[] tokens) {
        Objects.requireNonNull(tokens, "tokens");
        return new String(model.detokenizeBytes(tokens), StandardCharsets.UTF_8);
    }

    /**
     * The number of tokens in the vocabulary.
     *
     * @return {@link ModelInfo#vocabSize()}
     */
    public int vocabSize() {
        return model.info().vocabSize();
    }
}

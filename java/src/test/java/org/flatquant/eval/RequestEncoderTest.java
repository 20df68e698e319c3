package org.flatquant.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * lm-eval's {@code HFLM._encode_pair} on a toy tokenizer whose tokens are GPT-2-like pieces (an optional space
 * and a run of non-spaces, or a run of spaces). The expected ids follow lm-eval's rule by hand: trailing
 * whitespace of the context moves to the continuation, the continuation is {@code encode(context +
 * continuation)} minus the first {@code len(encode(context))} tokens.
 */
class RequestEncoderTest {
    private static final Pattern PIECE = Pattern.compile(" ?[^ ]+| +");
    private final Map<String, Integer> vocab = new HashMap<>();
    private boolean bos;

    private int[] tokenize(String s) {
        List<Integer> ids = new ArrayList<>();
        if (bos) {
            ids.add(0);
        }
        Matcher m = PIECE.matcher(s);
        while (m.find()) {
            ids.add(vocab.computeIfAbsent(m.group(), k -> vocab.size() + 1));
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    private int id(String piece) {
        return vocab.computeIfAbsent(piece, k -> vocab.size() + 1);
    }

    @Test
    void plainSplit() {
        RequestEncoder enc = new RequestEncoder(this::tokenize);
        RequestEncoder.Encoded e = enc.encode("Hello world", " again");
        assertArrayEquals(new int[] {id("Hello"), id(" world")}, e.context());
        assertArrayEquals(new int[] {id(" again")}, e.continuation());
        assertEquals(3, e.length());
    }

    @Test
    void trailingSpacesMoveToTheContinuation() {
        RequestEncoder enc = new RequestEncoder(this::tokenize);
        // Without the move, "Answer: " would end in a lone " " token and the continuation would be empty.
        RequestEncoder.Encoded e = enc.encode("Answer: ", "yes");
        assertArrayEquals(new int[] {id("Answer:")}, e.context());
        assertArrayEquals(new int[] {id(" yes")}, e.continuation());
        // All trailing whitespace moves, U+00A0 included; here it then merges into the token "Answer:\u00a0",
        // which lm-eval counts as context (one token, like "Answer:"), so " yes" alone is scored.
        RequestEncoder.Encoded two = enc.encode("Answer:\u00a0 ", "yes");
        assertArrayEquals(new int[] {id("Answer:")}, two.context());
        assertArrayEquals(new int[] {id(" yes")}, two.continuation());
    }

    @Test
    void aStraddlingTokenCountsAsContext() {
        // encode("abcd ef") = [abcd, " ef"], encode("ab") = [ab]: lm-eval drops one token from the whole
        // encoding and scores " ef" after the context tokens [ab].
        RequestEncoder enc = new RequestEncoder(this::tokenize);
        RequestEncoder.Encoded e = enc.encode("ab", "cd ef");
        assertArrayEquals(new int[] {id("ab")}, e.context());
        assertArrayEquals(new int[] {id(" ef")}, e.continuation());
        assertThrows(IllegalArgumentException.class, () -> enc.encode("abc", "def"));
    }

    @Test
    void bosStaysInTheContext() {
        bos = true;
        RequestEncoder enc = new RequestEncoder(this::tokenize);
        RequestEncoder.Encoded e = enc.encode("Hello world", " again");
        assertArrayEquals(new int[] {0, id("Hello"), id(" world")}, e.context());
        assertArrayEquals(new int[] {id(" again")}, e.continuation());
    }

    @Test
    void truncationDropsTheOldestContextTokens() {
        RequestEncoder.Encoded e = new RequestEncoder.Encoded(new int[] {1, 2, 3, 4}, new int[] {5, 6});
        assertSame(e, RequestEncoder.truncate(e, 6));
        RequestEncoder.Encoded t = RequestEncoder.truncate(e, 4);
        assertArrayEquals(new int[] {3, 4}, t.context());
        assertArrayEquals(new int[] {5, 6}, t.continuation());
        assertThrows(IllegalArgumentException.class, () -> RequestEncoder.truncate(e, 2));
    }
}

package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.ToIntFunction;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chat template detection and rendering against prompts written out by hand from the templates' Jinja source, and
 * the GGUF metadata reader against files written by an independent writer in this test.
 */
class ChatFormatTest {
    /** SmolLM2-135M-Instruct's tokenizer.chat_template, as stored in its GGUF (the newlines are real newlines). */
    static final String SMOLLM2_TEMPLATE = "{% for message in messages %}{% if loop.first and messages[0]['role'] "
            + "!= 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            + "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
            + "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /** A vocabulary where the ChatML markers are tokens 1 and 2 (as in SmolLM2) and nothing else is special. */
    static final ToIntFunction<String> CHATML_VOCAB = t -> t.equals("<|im_start|>") ? 1 : t.equals("<|im_end|>")
            ? 2 : -1;

    @Test
    void smollm2TemplateIsChatmlWithItsDefaultSystemMessage() {
        ChatFormat f = ChatFormat.detect(SMOLLM2_TEMPLATE, CHATML_VOCAB);
        assertEquals(ChatFormat.Kind.CHATML, f.kind());
        assertEquals("You are a helpful AI assistant named SmolLM, trained by Hugging Face", f.defaultSystem());
        assertEquals("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                + "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
                f.render(List.of(new ChatFormat.Message("user", "What is 2+2?"))));
        assertEquals("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
                f.render(List.of(new ChatFormat.Message("system", "Be terse."),
                        new ChatFormat.Message("user", "Hi"), new ChatFormat.Message("assistant", "Hello!"),
                        new ChatFormat.Message("user", "Bye"))), "a given system message replaces the default");
        assertArrayEquals(new int[] {2, 1}, f.stopTokens());
    }

    @Test
    void escapedNewlinesAndTemplatesWithoutADefaultSystemMessage() {
        String escaped = SMOLLM2_TEMPLATE.replace("\n", "\\n");
        assertEquals("You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                ChatFormat.detect(escaped, CHATML_VOCAB).defaultSystem());
        String qwenLike = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                + "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        ChatFormat f = ChatFormat.detect(qwenLike, CHATML_VOCAB);
        assertEquals(ChatFormat.Kind.CHATML, f.kind());
        assertNull(f.defaultSystem());
        assertEquals("<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n",
                f.render(List.of(new ChatFormat.Message("user", "x"))));
    }

    @Test
    void everythingElseIsPlain() {
        ChatFormat none = ChatFormat.detect(null, CHATML_VOCAB);
        assertEquals(ChatFormat.Kind.PLAIN, none.kind());
        assertEquals("system: s\nuser: u\nassistant: a\nuser: v\nassistant:", none.render(List.of(
                new ChatFormat.Message("system", "s"), new ChatFormat.Message("user", "u"),
                new ChatFormat.Message("assistant", "a"), new ChatFormat.Message("user", "v"))));
        assertEquals(List.of("\nuser:", "\nsystem:"), none.stopStrings());
        assertEquals(0, none.stopTokens().length);

        String llama2 = "{% for message in messages %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}"
                + "{% endfor %}";
        assertEquals(ChatFormat.Kind.PLAIN, ChatFormat.detect(llama2, CHATML_VOCAB).kind());
        // A ChatML template on a vocabulary without the markers as single tokens cannot be followed.
        assertEquals(ChatFormat.Kind.PLAIN, ChatFormat.detect(SMOLLM2_TEMPLATE, t -> -1).kind());
        assertNull(ChatFormat.chatml(SMOLLM2_TEMPLATE, t -> -1));
    }

    // ---- GGUF metadata ------------------------------------------------------------------------------------------

    /** Writes a GGUF v3 header with the given metadata and no tensors (little-endian, as the format says). */
    static byte[] gguf(int version, Map<String, Object> kv) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        b.put("GGUF".getBytes(StandardCharsets.US_ASCII)).putInt(version).putLong(0).putLong(kv.size());
        for (Map.Entry<String, Object> e : kv.entrySet()) {
            putString(b, e.getKey());
            Object v = e.getValue();
            if (v instanceof String s) {
                b.putInt(8);
                putString(b, s);
            } else if (v instanceof Integer i) {
                b.putInt(4).putInt(i); // uint32
            } else if (v instanceof Float f) {
                b.putInt(6).putFloat(f);
            } else if (v instanceof String[] arr) {
                b.putInt(9).putInt(8).putLong(arr.length);
                for (String s : arr) {
                    putString(b, s);
                }
            } else if (v instanceof int[] arr) {
                b.putInt(9).putInt(5).putLong(arr.length); // int32 array
                for (int x : arr) {
                    b.putInt(x);
                }
            } else {
                throw new IllegalArgumentException(String.valueOf(v));
            }
        }
        out.write(b.array(), 0, b.position());
        return out.toByteArray();
    }

    static void putString(ByteBuffer b, String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        b.putLong(bytes.length).put(bytes);
    }

    @Test
    void readsTheTemplateBehindOtherMetadata(@TempDir Path dir) throws IOException {
        Map<String, Object> kv = new java.util.LinkedHashMap<>();
        kv.put("general.architecture", "llama");
        kv.put("llama.block_count", 30);
        kv.put("llama.rope.freq_base", 10000f);
        kv.put("tokenizer.ggml.tokens", new String[] {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "é"});
        kv.put("tokenizer.ggml.token_type", new int[] {3, 3, 3, 1});
        kv.put("tokenizer.chat_template", SMOLLM2_TEMPLATE);
        kv.put("general.quantization_version", 2);
        Path f = dir.resolve("m.gguf");
        Files.write(f, gguf(3, kv));
        assertEquals(Optional.of(SMOLLM2_TEMPLATE), GgufStrings.read(f, "tokenizer.chat_template"));
        assertEquals(Optional.of("llama"), GgufStrings.read(f, "general.architecture"));
        assertEquals(Optional.empty(), GgufStrings.read(f, "tokenizer.missing"));
        assertThrows(IOException.class, () -> GgufStrings.read(f, "llama.block_count"), "not a string");

        Files.write(dir.resolve("v2.gguf"), gguf(2, Map.of("tokenizer.chat_template", "x")));
        assertEquals(Optional.of("x"), GgufStrings.read(dir.resolve("v2.gguf"), "tokenizer.chat_template"));
    }

    @Test
    void corruptFilesGiveIoExceptions(@TempDir Path dir) throws IOException {
        Map<String, Object> kv = new java.util.LinkedHashMap<>();
        kv.put("a.key", "value");
        kv.put("tokenizer.chat_template", "t"); // last, so any truncation cuts into or before it
        byte[] good = gguf(3, kv);
        for (int cut = 0; cut < good.length; cut++) {
            Path f = dir.resolve("cut" + cut + ".gguf");
            Files.write(f, Arrays.copyOf(good, cut));
            assertThrows(IOException.class, () -> GgufStrings.read(f, "tokenizer.chat_template"), "cut at " + cut);
        }
        byte[] badMagic = good.clone();
        badMagic[0] = 'X';
        Files.write(dir.resolve("magic.gguf"), badMagic);
        assertThrows(IOException.class, () -> GgufStrings.read(dir.resolve("magic.gguf"), "k"));
        byte[] hugeString = good.clone();
        ByteBuffer.wrap(hugeString).order(ByteOrder.LITTLE_ENDIAN).putLong(24, Long.MAX_VALUE); // first key length
        Files.write(dir.resolve("huge.gguf"), hugeString);
        IOException e = assertThrows(IOException.class, () -> GgufStrings.read(dir.resolve("huge.gguf"), "k"));
        assertTrue(e.getMessage().contains("implausible"), e.getMessage());
    }

    /** The shipped SmolLM2 file, when this machine has it: its template is the one above. */
    @Test
    void realSmolLm2File() throws IOException {
        Path p = smolLm2();
        assumeTrue(p != null, "SmolLM2-135M-Instruct GGUF not found (set -Dflatquant.smollm2.gguf)");
        assertEquals(Optional.of(SMOLLM2_TEMPLATE), GgufStrings.read(p, "tokenizer.chat_template"));
    }

    /** -Dflatquant.smollm2.gguf, $FQ_SMOLLM2_GGUF, or the cache of ./flatquant; null when none exists. */
    static Path smolLm2() {
        String prop = System.getProperty("flatquant.smollm2.gguf", "");
        String env = System.getenv().getOrDefault("FQ_SMOLLM2_GGUF", "");
        String cache = System.getenv().getOrDefault("FQ_CACHE", System.getProperty("user.home") + "/.cache/flatquant");
        for (String c : List.of(prop, env, cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf")) {
            if (!c.isBlank() && Files.isRegularFile(Path.of(c))) {
                return Path.of(c);
            }
        }
        return null;
    }
}

package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.TestSupport;
import org.flatquant.cli.ServeCommand;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code flatquant serve} end to end on real models: the server is started through {@link ServeCommand} as the
 * command line does, and answers are checked against greedy decoding recomputed independently from the model's
 * whole-sequence logits (no KV cache, no sampler, no server).
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ModelServerTest {
    static Path path;
    static OpenAiServer server;
    static URI base;
    /** A second, independent copy of the model for the reference computations. */
    static Engine refEngine;
    static Model ref;

    @BeforeAll
    static void start() {
        path = TestSupport.storiesModel();
        server = ServeCommand.start(new String[] {"serve", "--model", path.toString(), "--port", "0", "--threads",
            "2", "--sessions", "2", "--ctx", "256", "--max-tokens", "64", "--model-id", "stories"},
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        base = server.baseUri();
        refEngine = Engine.cpu(1);
        ref = Model.load(refEngine, path);
    }

    @AfterAll
    static void stop() {
        if (server != null) {
            server.close();
        }
        if (ref != null) {
            ref.close();
            refEngine.close();
        }
    }

    /** Greedy continuation from full-sequence logits: argmax (lowest id on ties) until EOS or n tokens. */
    static int[] greedyReference(Model m, int[] prompt, int n) {
        int v = m.info().vocabSize();
        int[] seq = prompt.clone();
        for (int step = 0; step < n; step++) {
            float[] logits = m.logits(seq);
            int best = 0;
            for (int j = 1; j < v; j++) {
                if (logits[(seq.length - 1) * v + j] > logits[(seq.length - 1) * v + best]) {
                    best = j;
                }
            }
            if (best == m.info().eosId()) {
                break;
            }
            seq = Arrays.copyOf(seq, seq.length + 1);
            seq[seq.length - 1] = best;
        }
        return Arrays.copyOfRange(seq, prompt.length, seq.length);
    }

    /** The text the generated ids add after the prompt, spacing included. */
    static String continuation(Model m, int[] prompt, int[] generated) {
        int[] all = Arrays.copyOf(prompt, prompt.length + generated.length);
        System.arraycopy(generated, 0, all, prompt.length, generated.length);
        String whole = m.tokenizer().decode(all);
        String head = m.tokenizer().decode(prompt);
        assertTrue(whole.startsWith(head), whole + " / " + head);
        return whole.substring(head.length());
    }

    static String text(Http.Reply r) {
        return (String) ServerHttpTest.choice(r.json()).get("text");
    }

    @Test
    void greedyCompletionMatchesTheReferenceStreamedOrNot() throws IOException {
        String prompt = "Once upon a time";
        int[] ids = ref.tokenizer().encode(prompt, Bos.DEFAULT);
        int[] gen = greedyReference(ref, ids, 40);
        String expected = continuation(ref, ids, gen);

        Http.Reply r = Http.post(base, "/v1/completions", "{\"model\": \"stories\", \"prompt\": \"" + prompt
                + "\", \"max_tokens\": 40, \"temperature\": 0}");
        assertEquals(200, r.status(), r.body());
        assertEquals(expected, text(r));
        Map<String, Object> usage = ServerHttpTest.map(r.json().get("usage"));
        assertEquals(ids.length, ServerHttpTest.num(usage.get("prompt_tokens")));
        assertEquals(gen.length, ServerHttpTest.num(usage.get("completion_tokens")));
        assertEquals(gen.length == 40 ? "length" : "stop", ServerHttpTest.choice(r.json()).get("finish_reason"));

        Http.Reply s = Http.post(base, "/v1/completions", "{\"prompt\": \"" + prompt
                + "\", \"max_tokens\": 40, \"temperature\": 0, \"stream\": true}");
        StringBuilder streamed = new StringBuilder();
        int chunks = 0;
        for (String e : s.events()) {
            if (!e.equals("[DONE]")) {
                streamed.append(ServerHttpTest.choice(ServerHttpTest.parse(e)).get("text"));
                chunks++;
            }
        }
        assertEquals(expected, streamed.toString());
        assertTrue(chunks > 10, "streamed token by token, not in one piece: " + chunks);
    }

    @Test
    void concurrentRequestsOnTwoSessionsEachGetTheirOwnAnswer() throws Exception {
        String[] prompts = ThreadSafetyTest.PROMPTS;
        String[] expected = new String[prompts.length];
        for (int i = 0; i < prompts.length; i++) {
            int[] ids = ref.tokenizer().encode(prompts[i], Bos.DEFAULT);
            expected[i] = continuation(ref, ids, greedyReference(ref, ids, 24));
        }
        ExecutorService clients = Executors.newFixedThreadPool(prompts.length);
        try {
            List<Future<Http.Reply>> replies = new ArrayList<>();
            for (int round = 0; round < 2; round++) {
                for (String p : prompts) {
                    replies.add(clients.submit(() -> Http.post(base, "/v1/completions", "{\"prompt\": \"" + p
                            + "\", \"max_tokens\": 24, \"temperature\": 0}")));
                }
            }
            for (int k = 0; k < replies.size(); k++) {
                Http.Reply r = replies.get(k).get(120, TimeUnit.SECONDS);
                assertEquals(200, r.status(), r.body());
                assertEquals(expected[k % prompts.length], text(r), "request " + k);
            }
        } finally {
            clients.shutdownNow();
        }
    }

    @Test
    void seededSamplingIsReproducibleAndSeedsMatter() throws IOException {
        String req = "{\"prompt\": \"The cat\", \"max_tokens\": 30, \"temperature\": 1.0, \"top_p\": 0.95, "
                + "\"seed\": %d}";
        String a = text(Http.post(base, "/v1/completions", req.formatted(7)));
        String b = text(Http.post(base, "/v1/completions", req.formatted(7)));
        assertEquals(a, b);
        boolean differs = false;
        for (long seed = 8; seed < 14 && !differs; seed++) {
            differs = !a.equals(text(Http.post(base, "/v1/completions", req.formatted(seed))));
        }
        assertTrue(differs, "six other seeds all gave the same text: " + a);
    }

    @Test
    void chatOnAModelWithoutATemplateUsesThePlainFormat() throws IOException {
        Http.Reply r = Http.post(base, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", "
                + "\"content\": \"Tell me a story\"}], \"max_tokens\": 16, \"temperature\": 0}");
        assertEquals(200, r.status(), r.body());
        int promptTokens = ref.tokenizer().encode("user: Tell me a story\nassistant:", Bos.DEFAULT).length;
        assertEquals(promptTokens, ServerHttpTest.num(ServerHttpTest.map(r.json().get("usage")).get("prompt_tokens")));
        String content = (String) ServerHttpTest.map(ServerHttpTest.choice(r.json()).get("message")).get("content");
        assertFalse(content.contains("\nuser:"), content);
    }

    @Test
    void commandLineErrors() {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8);
        PrintStream o = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        assertEquals(2, ServeCommand.run(new String[] {"serve", "--model", path.toString(), "--port", "99999"}, o, e));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("--port must be between 0 and 65535"), err.toString());
        assertEquals(2, ServeCommand.run(new String[] {"serve", "--model", path.toString(), "--chat-format", "x"}, o,
                e));
        assertEquals(2, ServeCommand.run(new String[] {"serve", "--bogus"}, o, e));
        assertEquals(0, ServeCommand.run(new String[] {"serve", "--help"}, o, e));
        RuntimeException missing = assertThrows(RuntimeException.class, () -> ServeCommand.start(
                new String[] {"serve", "--model", "/no/such.gguf"}, e));
        assertTrue(missing.getMessage().contains("model file not found"), missing.getMessage());
        RuntimeException chatml = assertThrows(RuntimeException.class, () -> ServeCommand.start(
                new String[] {"serve", "--model", path.toString(), "--port", "0", "--chat-format", "chatml"}, e));
        assertTrue(chatml.getMessage().contains("ChatML cannot be used"), chatml.getMessage());
        RuntimeException busyPort = assertThrows(RuntimeException.class, () -> ServeCommand.start(
                new String[] {"serve", "--model", path.toString(), "--port", Integer.toString(server.port())}, e));
        assertTrue(busyPort.getMessage().contains("cannot listen"), busyPort.getMessage());
    }

    /** SmolLM2-135M-Instruct, when this machine has it: ChatML with its default system message. */
    @Test
    void smolLm2ChatUsesChatml() throws IOException {
        Path smol = ChatFormatTest.smolLm2();
        assumeTrue(smol != null, "SmolLM2-135M-Instruct GGUF not found (set -Dflatquant.smollm2.gguf)");
        OpenAiServer s = ServeCommand.start(new String[] {"serve", "--model", smol.toString(), "--port", "0",
            "--ctx", "512"}, new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        try {
            Http.Reply r = Http.post(s.baseUri(), "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", "
                    + "\"content\": \"What is the capital of France?\"}], \"max_tokens\": 12, \"temperature\": 0}");
            assertEquals(200, r.status(), r.body());
            String rendered = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                    + "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                    + "<|im_start|>assistant\n";
            Map<String, Object> usage = ServerHttpTest.map(r.json().get("usage"));
            try (Engine e = Engine.cpu(1); Model m = Model.load(e, smol)) {
                int[] ids = m.tokenizer().encode(rendered, Bos.DEFAULT);
                assertEquals(ids.length, ServerHttpTest.num(usage.get("prompt_tokens")));
                assertEquals(1, ids[0], "<|im_start|> is one special token");
            }
            String content = (String) ServerHttpTest.map(ServerHttpTest.choice(r.json()).get("message"))
                    .get("content");
            assertNotEquals("", content.strip());
            assertFalse(content.contains("<|im_"), content);
            System.out.println("SmolLM2 answered: " + content);
        } finally {
            s.close();
        }
    }
}

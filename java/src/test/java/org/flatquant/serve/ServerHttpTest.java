package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The HTTP surface of {@link OpenAiServer} over a {@link FakeBackend}, whose answers are known: response shapes of
 * every endpoint, streaming, stop sequences, and one 4xx for each kind of malformed or out-of-range request.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ServerHttpTest {
    static final int CTX = 64;
    static final int MAX_TOKENS = 32;

    FakeBackend backend;
    OpenAiServer server;
    URI base;

    @BeforeEach
    void start() throws IOException {
        backend = new FakeBackend(1, CTX, ChatFormat.plain());
        ServerConfig config = ServerConfig.defaults().withAddress("127.0.0.1", 0)
                .withLimits(0, MAX_TOKENS, 4).withMaxBodyBytes(4096)
                .withTimings(Duration.ofSeconds(5), Duration.ofSeconds(5));
        server = OpenAiServer.start(backend, config);
        base = server.baseUri();
    }

    @AfterEach
    void stop() {
        server.close();
        assertTrue(backend.closed.get(), "the server closes its backend");
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> choice(Map<String, Object> body) {
        return ((List<Map<String, Object>>) body.get("choices")).get(0);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) {
        return (Map<String, Object>) o;
    }

    static long num(Object o) {
        return ((Number) o).longValue();
    }

    @Test
    void modelsAndHealth() throws IOException {
        Http.Reply models = Http.get(base, "/v1/models");
        assertEquals(200, models.status());
        assertEquals("list", models.json().get("object"));
        Map<String, Object> m = map(((List<?>) models.json().get("data")).get(0));
        assertEquals("fake-model", m.get("id"));
        assertEquals("model", m.get("object"));
        assertEquals(CTX, num(m.get("context_length")));

        assertEquals(200, Http.get(base, "/v1/models/fake-model").status());
        Http.Reply unknown = Http.get(base, "/v1/models/gpt-4");
        assertEquals(404, unknown.status());
        assertEquals("model_not_found", map(unknown.json().get("error")).get("code"));

        Http.Reply health = Http.get(base, "/health");
        assertEquals(200, health.status());
        assertEquals("ok", health.json().get("status"));
        assertEquals(1L, num(health.json().get("sessions")));
        assertEquals(200, Http.request(base, "HEAD", "/health", null).status());
    }

    @Test
    void completion() throws IOException {
        Http.Reply r = Http.post(base, "/v1/completions",
                "{\"model\": \"fake-model\", \"prompt\": \"hello\", \"max_tokens\": 10}");
        assertEquals(200, r.status(), r.body());
        assertTrue(r.header("Content-Type").startsWith("application/json"));
        Map<String, Object> body = r.json();
        assertEquals("text_completion", body.get("object"));
        assertTrue(((String) body.get("id")).startsWith("cmpl-"));
        assertEquals("fake-model", body.get("model"));
        assertEquals("olleh", choice(body).get("text"));
        assertEquals("stop", choice(body).get("finish_reason"));
        Map<String, Object> usage = map(body.get("usage"));
        assertEquals(5, num(usage.get("prompt_tokens")));
        assertEquals(5, num(usage.get("completion_tokens")));
        assertEquals(10, num(usage.get("total_tokens")));

        Http.Reply cut = Http.post(base, "/v1/completions", "{\"prompt\": [\"hello\"], \"max_tokens\": 3}");
        assertEquals("oll", choice(cut.json()).get("text"));
        assertEquals("length", choice(cut.json()).get("finish_reason"));

        // Token ids as the prompt: 'a' 'b' 'c'.
        Http.Reply ids = Http.post(base, "/v1/completions", "{\"prompt\": [97, 98, 99], \"max_tokens\": 8}");
        assertEquals("cba", choice(ids.json()).get("text"));

        // Without max_tokens the OpenAI default of 16 applies.
        String longPrompt = "abcdefghijklmnopqrstuvwxyz";
        Http.Reply dflt = Http.post(base, "/v1/completions", "{\"prompt\": \"" + longPrompt + "\"}");
        assertEquals(FakeBackend.expectedAnswer(longPrompt, Requests.COMPLETION_DEFAULT_MAX_TOKENS),
                choice(dflt.json()).get("text"));
    }

    @Test
    void completionStream() throws IOException {
        Http.Reply r = Http.post(base, "/v1/completions", "{\"prompt\": \"hello\", \"max_tokens\": 10, "
                + "\"stream\": true, \"stream_options\": {\"include_usage\": true}}");
        assertEquals(200, r.status());
        assertTrue(r.header("Content-Type").startsWith("text/event-stream"));
        List<String> events = r.events();
        assertEquals("[DONE]", events.get(events.size() - 1));
        StringBuilder text = new StringBuilder();
        String finish = null;
        Map<String, Object> usage = null;
        String id = null;
        for (String e : events.subList(0, events.size() - 1)) {
            Map<String, Object> chunk = parse(e);
            assertEquals("text_completion", chunk.get("object"));
            id = id == null ? (String) chunk.get("id") : id;
            assertEquals(id, chunk.get("id"), "every chunk carries the same id");
            List<?> choices = (List<?>) chunk.get("choices");
            if (choices.isEmpty()) {
                usage = map(chunk.get("usage"));
                continue;
            }
            Map<String, Object> c = map(choices.get(0));
            text.append(c.get("text"));
            if (c.get("finish_reason") != Json.NULL) {
                finish = (String) c.get("finish_reason");
            }
        }
        assertEquals("olleh", text.toString());
        assertEquals("stop", finish);
        assertNotNull(usage);
        assertEquals(10, num(usage.get("total_tokens")));
    }

    @Test
    void chat() throws IOException {
        String body = "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, "
                + "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}], \"max_tokens\": 60}";
        // The plain format renders "system: be brief\nuser: hi\nassistant:"; the fake answers it reversed.
        String rendered = "system: be brief\nuser: hi\nassistant:";
        // Reversed, the rendered prompt contains neither "\nuser:" nor "\nsystem:", so nothing is cut.
        String expected = FakeBackend.expectedAnswer(rendered, 60);
        Http.Reply tooLong = Http.post(base, "/v1/chat/completions", body);
        assertEquals(400, tooLong.status(), "60 tokens do not fit beside 36 prompt tokens in 64: " + tooLong.body());

        Http.Reply r = Http.post(base, "/v1/chat/completions", body.replace("60", "20"));
        assertEquals(200, r.status(), r.body());
        Map<String, Object> json = r.json();
        assertEquals("chat.completion", json.get("object"));
        assertTrue(((String) json.get("id")).startsWith("chatcmpl-"));
        Map<String, Object> message = map(choice(json).get("message"));
        assertEquals("assistant", message.get("role"));
        assertEquals(expected.substring(0, 20), message.get("content"));
        assertEquals("length", choice(json).get("finish_reason"));
        assertEquals(rendered.length(), num(map(json.get("usage")).get("prompt_tokens")));

        Http.Reply s = Http.post(base, "/v1/chat/completions",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"ab\"}], \"stream\": true}");
        List<String> events = s.events();
        assertEquals("[DONE]", events.get(events.size() - 1));
        Map<String, Object> first = map(choice(parse(events.get(0))).get("delta"));
        assertEquals("assistant", first.get("role"));
        StringBuilder text = new StringBuilder();
        for (String e : events.subList(0, events.size() - 1)) {
            Map<String, Object> c = choice(parse(e));
            assertEquals("chat.completion.chunk", parse(e).get("object"));
            Object content = map(c.get("delta")).get("content");
            if (content != null) {
                text.append(content);
            }
        }
        // Without max_tokens a chat answer may fill the context; the fake stops at its EOS first.
        assertEquals(FakeBackend.expectedAnswer("user: ab\nassistant:", CTX), text.toString());
    }

    @Test
    void stopSequencesCutTheAnswerAlsoWhenStreaming() throws IOException {
        String req = "{\"prompt\": \"abcdefgh\", \"max_tokens\": 8, \"stop\": [\"xyz\", \"dc\"]%s}";
        Http.Reply plain = Http.post(base, "/v1/completions", req.formatted(""));
        assertEquals("hgfe", choice(plain.json()).get("text"));
        assertEquals("stop", choice(plain.json()).get("finish_reason"));

        Http.Reply streamed = Http.post(base, "/v1/completions", req.formatted(", \"stream\": true"));
        StringBuilder text = new StringBuilder();
        for (String e : streamed.events()) {
            if (!e.equals("[DONE]")) {
                text.append(choice(parse(e)).get("text"));
            }
        }
        assertEquals("hgfe", text.toString(), "the held-back 'd' must not leak into the stream");
    }

    static Map<String, Object> parse(String json) {
        try {
            return map(Json.parse(json));
        } catch (Json.ParseException e) {
            throw new AssertionError(json, e);
        }
    }

    /** Posts a body and checks the status, the error type and that the message names the problem. */
    private void refused(String path, String body, int status, String param, String messagePart) throws IOException {
        Http.Reply r = Http.post(base, path, body);
        assertEquals(status, r.status(), body + " -> " + r.body());
        Map<String, Object> error = map(r.json().get("error"));
        assertTrue(((String) error.get("message")).contains(messagePart), error.get("message") + " lacks "
                + messagePart);
        assertNotNull(error.get("type"));
        if (param != null) {
            assertEquals(param, error.get("param"));
        }
    }

    @Test
    void malformedAndOutOfRangeRequestsGetClear4xx() throws IOException {
        String c = "/v1/completions";
        refused(c, "{\"prompt\": ", 400, null, "not valid JSON");
        refused(c, "{\"prompt\": \"a\", \"prompt\": \"b\"}", 400, null, "duplicate key");
        refused(c, "[1, 2]", 400, null, "JSON object");
        refused(c, "{}", 400, "prompt", "required");
        refused(c, "{\"prompt\": 5}", 400, "prompt", "must be a string");
        refused(c, "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt", "one prompt");
        refused(c, "{\"prompt\": [300]}", 400, "prompt", "outside the vocabulary");
        refused(c, "{\"prompt\": \"\"}", 400, "prompt", "no tokens");
        refused(c, "{\"prompt\": \"a\", \"max_tokens\": 0}", 400, "max_tokens", "at least 1");
        refused(c, "{\"prompt\": \"a\", \"max_tokens\": 2.5}", 400, "max_tokens", "integer");
        refused(c, "{\"prompt\": \"a\", \"max_tokens\": \"ten\"}", 400, "max_tokens", "integer");
        refused(c, "{\"prompt\": \"a\", \"max_tokens\": 33}", 400, "max_tokens", "limit of 32");
        refused(c, "{\"prompt\": \"" + "x".repeat(CTX) + "\"}", 400, "prompt", "at most 63");
        refused(c, "{\"prompt\": \"" + "x".repeat(40) + "\", \"max_tokens\": 30}", 400, "max_tokens",
                "context holds 64");
        refused(c, "{\"prompt\": \"a\", \"temperature\": 3}", 400, "temperature", "between 0 and 2");
        refused(c, "{\"prompt\": \"a\", \"top_p\": 0}", 400, "top_p", "between");
        refused(c, "{\"prompt\": \"a\", \"n\": 2}", 400, "n", "n = 1");
        refused(c, "{\"prompt\": \"a\", \"logprobs\": 5}", 400, "logprobs", "not supported");
        refused(c, "{\"prompt\": \"a\", \"presence_penalty\": 0.5}", 400, "presence_penalty", "not supported");
        refused(c, "{\"prompt\": \"a\", \"stop\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}", 400, "stop", "at most 4");
        refused(c, "{\"prompt\": \"a\", \"stream\": \"yes\"}", 400, "stream", "boolean");
        refused(c, "{\"prompt\": \"a\", \"model\": \"gpt-4\"}", 404, "model", "does not exist");
        refused(c, "{\"messages\": []}", 400, "messages", "/v1/chat/completions");

        String chat = "/v1/chat/completions";
        refused(chat, "{}", 400, "messages", "non-empty array");
        refused(chat, "{\"messages\": []}", 400, "messages", "non-empty array");
        refused(chat, "{\"messages\": [\"hi\"]}", 400, "messages[0]", "must be an object");
        refused(chat, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", 400, "messages[0].role",
                "not supported");
        refused(chat, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400,
                "messages[0].content", "text content");
        refused(chat, "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0].content", "string");
        refused(chat, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", 400, "tools",
                "not supported");
    }

    @Test
    void transportLevelErrors() throws IOException {
        // Invalid UTF-8 in the body.
        String bad = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: 16\r\nConnection: close\r\n\r\n";
        byte[] head = bad.getBytes(StandardCharsets.US_ASCII);
        byte[] body = {'{', '"', 'p', 'r', 'o', 'm', 'p', 't', '"', ':', '"', (byte) 0xC3, (byte) 0x28, '"', '}',
            ' '};
        byte[] req = new byte[head.length + body.length];
        System.arraycopy(head, 0, req, 0, head.length);
        System.arraycopy(body, 0, req, head.length, body.length);
        String resp = Http.raw(base, req);
        assertEquals(400, Http.rawStatus(resp), resp);
        assertTrue(resp.contains("not valid UTF-8"), resp);

        // A declared body over the limit is refused before it is read.
        String big = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"prompt\":";
        String bigResp = Http.raw(base, big.getBytes(StandardCharsets.US_ASCII));
        assertEquals(413, Http.rawStatus(bigResp), bigResp);

        // A body shorter than declared (the client hung up): refused, and the server carries on.
        String shortBody = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"prompt\": \"ab";
        String shortResp = Http.raw(base, shortBody.getBytes(StandardCharsets.US_ASCII));
        assertTrue(shortResp.isEmpty() || Http.rawStatus(shortResp) == 400, shortResp);

        // Not HTTP at all.
        String garbage = Http.raw(base, "HELLO THERE\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
        int status = Http.rawStatus(garbage);
        assertTrue(status == -1 || (status >= 400 && status < 500), garbage);

        Http.Reply get = Http.get(base, "/v1/completions");
        assertEquals(405, get.status());
        assertEquals("POST", get.header("Allow"));
        assertEquals(405, Http.post(base, "/v1/models", "{}").status());
        Http.Reply missing = Http.get(base, "/v1/engines");
        assertEquals(404, missing.status());
        assertEquals("not_found", map(missing.json().get("error")).get("code"));

        // After all of that the server still answers, and no request is left in flight.
        Http.Reply ok = Http.post(base, "/v1/completions", "{\"prompt\": \"ok\"}");
        assertEquals(200, ok.status());
        Map<String, Object> health = Http.get(base, "/health").json();
        assertEquals(0, num(health.get("in_flight")));
        assertNull(map(health).get("error"));
    }
}

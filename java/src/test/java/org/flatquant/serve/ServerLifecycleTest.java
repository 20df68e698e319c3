package org.flatquant.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.HttpURLConnection;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Concurrency and life cycle of {@link OpenAiServer} over a {@link FakeBackend}: parallel requests on several
 * session queues, the concurrency limit, cancellation when a client disconnects (streaming or not), and graceful
 * shutdown with and without running out of grace. Loopback only; every wait is bounded.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ServerLifecycleTest {
    FakeBackend backend;
    OpenAiServer server;
    URI base;
    final ExecutorService clients = Executors.newFixedThreadPool(8);

    OpenAiServer start(int sessions, int ctx, int maxConcurrent, Duration heartbeat, Duration grace)
            throws IOException {
        backend = new FakeBackend(sessions, ctx, ChatFormat.plain());
        ServerConfig config = ServerConfig.defaults().withAddress("127.0.0.1", 0)
                .withLimits(0, ctx, maxConcurrent).withTimings(heartbeat, grace);
        server = OpenAiServer.start(backend, config);
        base = server.baseUri();
        return server;
    }

    @AfterEach
    void stop() throws InterruptedException {
        Semaphore gate = backend == null ? null : backend.gate;
        if (gate != null) {
            gate.release(1000);
        }
        if (server != null) {
            server.close();
        }
        clients.shutdownNow();
        assertTrue(clients.awaitTermination(30, TimeUnit.SECONDS));
    }

    /** Polls a condition every 5 ms for at most 20 s. */
    static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting until " + what);
            }
            Thread.sleep(5);
        }
    }

    long health(String key) {
        try {
            return ((Number) Http.get(base, "/health").json().get(key)).longValue();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    static String completion(Http.Reply r) {
        return (String) ServerHttpTest.choice(r.json()).get("text");
    }

    @Test
    void concurrentRequestsAreSpreadOverSessionsAndAllAnswered() throws Exception {
        start(2, 256, 16, Duration.ofSeconds(5), Duration.ofSeconds(5));
        backend.tokenDelayMillis = 2;
        List<Future<Http.Reply>> replies = new ArrayList<>();
        List<String> prompts = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            String prompt = "request number " + i + " asks";
            prompts.add(prompt);
            boolean stream = i % 3 == 0;
            replies.add(clients.submit(() -> Http.post(base, "/v1/completions", "{\"prompt\": \"" + prompt
                    + "\", \"max_tokens\": 64" + (stream ? ", \"stream\": true" : "") + "}")));
        }
        for (int i = 0; i < replies.size(); i++) {
            Http.Reply r = replies.get(i).get(60, TimeUnit.SECONDS);
            assertEquals(200, r.status(), r.body());
            String text;
            if (i % 3 == 0) {
                StringBuilder sb = new StringBuilder();
                for (String e : r.events()) {
                    if (!e.equals("[DONE]")) {
                        sb.append(ServerHttpTest.choice(ServerHttpTest.parse(e)).get("text"));
                    }
                }
                text = sb.toString();
            } else {
                text = completion(r);
            }
            assertEquals(FakeBackend.expectedAnswer(prompts.get(i), 64), text, "answer " + i);
        }
        assertFalse(backend.sessionOverlap.get(), "a session ran two generations at once");
        assertEquals(12, health("completed"));
        assertEquals(0, health("in_flight"));
    }

    @Test
    void requestsBeyondTheConcurrencyLimitGet429() throws Exception {
        start(1, 128, 2, Duration.ofSeconds(5), Duration.ofSeconds(5));
        backend.gate = new Semaphore(0);
        Future<Http.Reply> first = clients.submit(() -> Http.post(base, "/v1/completions", "{\"prompt\": \"one\"}"));
        Future<Http.Reply> second = clients.submit(() -> Http.post(base, "/v1/completions", "{\"prompt\": \"two\"}"));
        await("two requests are in flight", () -> health("in_flight") == 2 && backend.started.get() == 1);
        assertEquals(1, health("queued"), "one session: the second request waits in its queue");

        Http.Reply third = Http.post(base, "/v1/completions", "{\"prompt\": \"three\"}");
        assertEquals(429, third.status(), third.body());
        assertEquals("1", third.header("Retry-After"));
        assertTrue(third.body().contains("limit of 2 concurrent requests"), third.body());

        Semaphore gate = backend.gate;
        backend.gate = null;
        gate.release(2);
        Http.Reply a = first.get(30, TimeUnit.SECONDS);
        Http.Reply b = second.get(30, TimeUnit.SECONDS);
        assertEquals("eno", completion(a));
        assertEquals("owt", completion(b));
        assertEquals(1, health("rejected"));
        assertEquals(200, Http.post(base, "/v1/completions", "{\"prompt\": \"four\"}").status());
    }

    @Test
    void aStreamingClientThatHangsUpCancelsItsGeneration() throws Exception {
        start(1, 4096, 4, Duration.ofMillis(50), Duration.ofSeconds(5));
        backend.tokenDelayMillis = 10; // 2000 tokens would take 20 s
        HttpURLConnection c = Http.open(base, "POST", "/v1/completions");
        c.setDoOutput(true);
        try (OutputStream os = c.getOutputStream()) {
            os.write(("{\"prompt\": \"" + "abcd".repeat(500) + "\", \"max_tokens\": 2000, \"stream\": true}")
                    .getBytes(StandardCharsets.UTF_8));
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(c.getInputStream(), StandardCharsets.UTF_8));
        String line = in.readLine();
        assertTrue(line.startsWith("data: "), line);
        long t0 = System.nanoTime();
        c.disconnect(); // closes the socket mid-stream
        await("the generation is cancelled", () -> health("cancelled") == 1);
        await("the session is free", () -> backend.running.get() == 0);
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(10), "cancelled long before the end");
        assertEquals(1, backend.stoppedByListener.get());
        assertEquals(0, health("in_flight"));
        // The session serves the next request normally.
        assertEquals("cba", completion(Http.post(base, "/v1/completions", "{\"prompt\": \"abc\"}")));
    }

    @Test
    void aWaitingNonStreamingClientThatHangsUpCancelsItsGeneration() throws Exception {
        start(1, 4096, 4, Duration.ofMillis(50), Duration.ofSeconds(5));
        backend.tokenDelayMillis = 10;
        String body = "{\"prompt\": \"" + "abcd".repeat(500) + "\", \"max_tokens\": 2000}";
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        try (Socket s = new Socket(base.getHost(), base.getPort())) {
            s.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    + "\r\nContent-Length: " + bytes.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            s.getOutputStream().write(bytes);
            s.getOutputStream().flush();
            await("the generation runs", () -> backend.running.get() == 1);
        } // the client hangs up without reading
        await("the generation is cancelled", () -> health("cancelled") == 1);
        await("the session is free", () -> backend.running.get() == 0);
        assertEquals(0, health("in_flight"));
    }

    @Test
    void aLongNonStreamingAnswerStartsEarlyAndIsStillValidJson() throws Exception {
        start(1, 256, 4, Duration.ofMillis(20), Duration.ofSeconds(5));
        backend.tokenDelayMillis = 5; // 100 tokens: about ten heartbeats of silence are filled with spaces
        String prompt = "x".repeat(50) + "y".repeat(50);
        Http.Reply r = Http.post(base, "/v1/completions", "{\"prompt\": \"" + prompt + "\", \"max_tokens\": 100}");
        assertEquals(200, r.status());
        assertTrue(r.body().startsWith(" "), "heartbeat spaces come first");
        assertEquals(FakeBackend.expectedAnswer(prompt, 100), completion(r));
    }

    @Test
    void gracefulShutdownFinishesAdmittedRequestsAndRefusesNewOnes() throws Exception {
        start(1, 256, 4, Duration.ofSeconds(5), Duration.ofSeconds(20));
        backend.tokenDelayMillis = 10; // 100 tokens: about a second
        String prompt = "p".repeat(100);
        Future<Http.Reply> running = clients.submit(() -> Http.post(base, "/v1/completions",
                "{\"prompt\": \"" + prompt + "\", \"max_tokens\": 100}"));
        await("the request runs", () -> backend.running.get() == 1);
        Future<?> closing = clients.submit(() -> server.close());
        await("the server stops accepting", () -> {
            try {
                return Http.get(base, "/health").status() == 503;
            } catch (IOException e) {
                return true; // the listener is already closed
            }
        });
        try {
            Http.Reply late = Http.post(base, "/v1/completions", "{\"prompt\": \"late\"}");
            assertEquals(503, late.status(), "a request during the drain is refused");
        } catch (ConnectException expected) {
            // Or it cannot even connect: the listening socket is closed.
        }
        Http.Reply r = running.get(30, TimeUnit.SECONDS);
        assertEquals(200, r.status(), r.body());
        assertEquals(FakeBackend.expectedAnswer(prompt, 100), completion(r), "the admitted request completes");
        closing.get(30, TimeUnit.SECONDS);
        assertTrue(backend.closed.get());
        assertThrows(IOException.class, () -> Http.get(base, "/health"));
    }

    @Test
    void shutdownCancelsWhatOutlivesTheGrace() throws Exception {
        start(1, 4096, 4, Duration.ofSeconds(5), Duration.ofMillis(200));
        backend.tokenDelayMillis = 10; // 2000 tokens: 20 s, far beyond the grace
        Future<Http.Reply> running = clients.submit(() -> Http.post(base, "/v1/completions",
                "{\"prompt\": \"" + "abcd".repeat(500) + "\", \"max_tokens\": 2000}"));
        await("the request runs", () -> backend.running.get() == 1);
        long t0 = System.nanoTime();
        server.close();
        assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(10), "close returned soon after the grace");
        Http.Reply r = running.get(30, TimeUnit.SECONDS);
        assertEquals(503, r.status(), r.body());
        Map<String, Object> error = ServerHttpTest.map(r.json().get("error"));
        assertEquals("shutting_down", error.get("code"));
        assertTrue(backend.closed.get());
        assertEquals(1, backend.stoppedByListener.get());
    }
}

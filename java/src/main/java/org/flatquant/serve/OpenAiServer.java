package org.flatquant.serve;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An OpenAI-compatible HTTP service on the JDK's built-in server ({@code jdk.httpserver}).
 *
 * <p>Endpoints: {@code POST /v1/completions}, {@code POST /v1/chat/completions} (both with {@code "stream": true}
 * for server-sent events ending in {@code data: [DONE]}), {@code GET /v1/models}, {@code GET /v1/models/{id}}
 * and {@code GET /health} (200 with counters while serving, 503 while shutting down). Errors are OpenAI error
 * objects with a 4xx status for the client's mistakes: 400 malformed or out-of-range request, 404 unknown path
 * or model, 405 wrong method, 413 body too large, 429 too many concurrent requests, 503 shutting down.
 *
 * <p>Threads: each HTTP exchange runs on a virtual thread, which parses, tokenizes, and then only waits for
 * events from its {@link Job}; generation runs on the {@link Scheduler}'s worker thread of one session. When a
 * write to the client fails (it disconnected), the job is cancelled and its session is free after one more token.
 *
 * <p>{@link #close()} shuts down gracefully: new generation requests get 503, running and queued requests get
 * {@link ServerConfig#shutdownGrace()} to finish, the rest are cancelled, then the listener and the connections
 * close and the backend is closed. Thread safe.
 *
 * @since 0.1
 */
public final class OpenAiServer implements AutoCloseable {
    private final Backend backend;
    private final ServerConfig config;
    private final Scheduler scheduler;
    private final HttpServer http;
    private final ExecutorService exchanges = Executors.newVirtualThreadPerTaskExecutor();
    private final long createdSeconds = System.currentTimeMillis() / 1000;
    private final AtomicBoolean closing = new AtomicBoolean();
    private final AtomicInteger activeExchanges = new AtomicInteger();
    private final CountDownLatch terminated = new CountDownLatch(1);

    private OpenAiServer(Backend backend, ServerConfig config) throws IOException {
        this.backend = backend;
        this.config = config;
        this.http = HttpServer.create(new InetSocketAddress(InetAddress.getByName(config.host()), config.port()), 64);
        this.scheduler = new Scheduler(backend, config.maxConcurrent());
        http.createContext("/", this::handle);
        http.setExecutor(exchanges);
        http.start();
    }

    /**
     * Starts serving. The server owns the backend from now on and closes it in {@link #close()}.
     *
     * @param backend what generates; closed by the server
     * @param config address and limits
     * @return the running server
     * @throws IOException when the address cannot be bound
     */
    public static OpenAiServer start(Backend backend, ServerConfig config) throws IOException {
        Objects.requireNonNull(backend, "backend");
        Objects.requireNonNull(config, "config");
        return new OpenAiServer(backend, config);
    }

    /**
     * The port the server listens on (the chosen one when the configuration said 0).
     *
     * @return the TCP port
     */
    public int port() {
        return http.getAddress().getPort();
    }

    /**
     * The base address of the service.
     *
     * @return for example {@code http://127.0.0.1:8080}
     */
    public URI baseUri() {
        String host = http.getAddress().getAddress().getHostAddress();
        return URI.create("http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port());
    }

    // ---- routing ----------------------------------------------------------------------------------------------

    private void handle(HttpExchange ex) {
        activeExchanges.incrementAndGet();
        try {
            String path = ex.getRequestURI().getPath();
            String method = ex.getRequestMethod();
            switch (path) {
                case "/health" -> {
                    allow(method, "GET");
                    health(ex);
                }
                case "/v1/models" -> {
                    allow(method, "GET");
                    sendJson(ex, 200, Json.obj("object", "list", "data", List.of(modelObject())));
                }
                case "/v1/completions" -> {
                    allow(method, "POST");
                    generate(ex, Requests.Kind.COMPLETION);
                }
                case "/v1/chat/completions" -> {
                    allow(method, "POST");
                    generate(ex, Requests.Kind.CHAT);
                }
                default -> {
                    if (path.startsWith("/v1/models/")) {
                        allow(method, "GET");
                        String id = path.substring("/v1/models/".length());
                        if (!id.equals(backend.modelId())) {
                            throw new ApiException(404, "invalid_request_error", "model", "model_not_found",
                                    "the model '" + id + "' does not exist; this server has '" + backend.modelId()
                                            + "'");
                        }
                        sendJson(ex, 200, modelObject());
                    } else {
                        throw new ApiException(404, "invalid_request_error", null, "not_found", "no endpoint "
                                + path + "; this server has /v1/completions, /v1/chat/completions, /v1/models and "
                                + "/health");
                    }
                }
            }
        } catch (ApiException e) {
            sendErrorQuietly(ex, e);
        } catch (IOException e) {
            // The client went away; there is nobody to answer.
        } catch (RuntimeException e) {
            sendErrorQuietly(ex, new ApiException(500, "server_error", null, null, "internal error: " + e));
        } finally {
            ex.close();
            activeExchanges.decrementAndGet();
        }
    }

    private static void allow(String method, String allowed) {
        if (!method.equals(allowed) && !(allowed.equals("GET") && method.equals("HEAD"))) {
            throw new ApiException(405, "invalid_request_error", null, "method_not_allowed", "use " + allowed
                    + " for this endpoint, not " + method);
        }
    }

    private Map<String, Object> modelObject() {
        return Json.obj("id", backend.modelId(), "object", "model", "created", createdSeconds, "owned_by",
                "flatquant", "context_length", backend.contextLength());
    }

    private void health(HttpExchange ex) throws IOException {
        boolean up = scheduler.isAccepting();
        sendJson(ex, up ? 200 : 503, Json.obj(
                "status", up ? "ok" : "shutting_down",
                "model", backend.modelId(),
                "sessions", backend.sessions(),
                "running", scheduler.running(),
                "queued", scheduler.queued(),
                "in_flight", scheduler.inFlight(),
                "max_concurrent", scheduler.maxConcurrent(),
                "completed", scheduler.completed.get(),
                "cancelled", scheduler.cancelled.get(),
                "failed", scheduler.failed.get(),
                "rejected", scheduler.rejected.get()));
    }

    // ---- generation -------------------------------------------------------------------------------------------

    private void generate(HttpExchange ex, Requests.Kind kind) throws IOException {
        if (!scheduler.isAccepting()) {
            scheduler.rejected.incrementAndGet();
            throw new ApiException(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        Object json;
        try {
            json = Json.parse(readBody(ex));
        } catch (Json.ParseException e) {
            throw ApiException.invalid(null, "the body is not valid JSON: " + e.getMessage());
        }
        Requests.Request req = Requests.parse(kind, json, backend, config);
        Job job = new Job(req.promptTokens(), req.options(), req.stop(), req.stopTokens());
        scheduler.submit(job);
        Response r = new Response(kind, (kind == Requests.Kind.CHAT ? "chatcmpl-" : "cmpl-") + randomId(),
                System.currentTimeMillis() / 1000, req.promptTokens().length);
        try {
            if (req.stream()) {
                stream(ex, job, r, req.includeUsage());
            } else {
                answer(ex, job, r);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            job.cancel(); // a no-op when the job has ended; otherwise the client is gone or we are stopping
        }
    }

    private String readBody(HttpExchange ex) throws IOException {
        String declared = ex.getRequestHeaders().getFirst("Content-Length");
        if (declared != null) {
            long n;
            try {
                n = Long.parseLong(declared.trim());
            } catch (NumberFormatException e) {
                throw ApiException.invalid(null, "malformed Content-Length");
            }
            if (n > config.maxBodyBytes()) {
                throw tooLarge();
            }
        }
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        try (InputStream in = ex.getRequestBody()) {
            int r;
            while ((r = in.read(chunk)) > 0) {
                buf.write(chunk, 0, r);
                if (buf.size() > config.maxBodyBytes()) {
                    throw tooLarge();
                }
            }
        }
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(buf.toByteArray())).toString();
        } catch (CharacterCodingException e) {
            throw ApiException.invalid(null, "the body is not valid UTF-8");
        }
    }

    private ApiException tooLarge() {
        return new ApiException(413, "invalid_request_error", null, "request_too_large", "the request body exceeds "
                + "this server's limit of " + config.maxBodyBytes() + " bytes");
    }

    private static String randomId() {
        byte[] b = new byte[12];
        ThreadLocalRandom.current().nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /**
     * A non-streaming answer. When nothing was written for a heartbeat period, status 200 is committed and a
     * space is sent; the write fails once the client has gone.
     */
    private void answer(HttpExchange ex, Job job, Response r) throws IOException, InterruptedException {
        StringBuilder text = new StringBuilder();
        OutputStream committed = null;
        Heartbeat beat = new Heartbeat(config.heartbeat());
        while (true) {
            Job.Event e = job.poll(beat.millisLeft());
            if (beat.due() && !(e instanceof Job.Done || e instanceof Job.Failed)) { // the end needs no beat
                if (committed == null) {
                    ex.getResponseHeaders().set("Content-Type", "application/json; charset=utf-8");
                    ex.sendResponseHeaders(200, 0);
                    committed = ex.getResponseBody();
                }
                committed.write(' ');
                committed.flush(); // throws once the client has gone: the finally of generate() cancels
                beat.wrote();
            }
            if (e == null) {
                continue;
            }
            Object body;
            int status = 200;
            switch (e) {
                case Job.Text t -> {
                    text.append(t.text());
                    continue;
                }
                case Job.Done d when d.finishReason().equals("cancelled") -> {
                    ApiException stop = shuttingDown();
                    body = stop.body();
                    status = stop.status();
                }
                case Job.Done d -> body = r.complete(text.toString(), d);
                case Job.Failed f -> {
                    body = f.error().body();
                    status = f.error().status();
                }
            }
            byte[] bytes = Json.write(body).getBytes(StandardCharsets.UTF_8);
            if (committed != null) {
                committed.write(bytes); // status 200 is sent already; an error shows only in the body
                committed.flush();
            } else {
                send(ex, status, bytes);
            }
            return;
        }
    }

    /** A streaming answer as server-sent events; silence longer than the heartbeat sends an SSE comment. */
    private void stream(HttpExchange ex, Job job, Response r, boolean includeUsage)
            throws IOException, InterruptedException {
        ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        ex.sendResponseHeaders(200, 0);
        OutputStream os = ex.getResponseBody();
        if (r.kind == Requests.Kind.CHAT) {
            event(os, r.chunk(Json.obj("role", "assistant", "content", ""), null));
        }
        Heartbeat beat = new Heartbeat(config.heartbeat());
        while (true) {
            Job.Event e = job.poll(beat.millisLeft());
            if (e == null) {
                if (beat.due()) {
                    os.write(": keep-alive\n\n".getBytes(StandardCharsets.UTF_8));
                    os.flush();
                    beat.wrote();
                }
                continue;
            }
            beat.wrote(); // every event below is written at once
            switch (e) {
                case Job.Text t -> event(os, r.kind == Requests.Kind.CHAT
                        ? r.chunk(Json.obj("content", t.text()), null) : r.chunk(t.text(), null));
                case Job.Done d when d.finishReason().equals("cancelled") -> {
                    event(os, Json.write(shuttingDown().body()));
                    return;
                }
                case Job.Done d -> {
                    event(os, r.kind == Requests.Kind.CHAT ? r.chunk(Json.obj(), d.finishReason())
                            : r.chunk("", d.finishReason()));
                    if (includeUsage) {
                        event(os, r.usageChunk(d));
                    }
                    event(os, "[DONE]");
                    return;
                }
                case Job.Failed f -> {
                    event(os, Json.write(f.error().body()));
                    return;
                }
            }
        }
    }

    /** Time since the last write to the client; the heartbeat is due when it reaches the period. */
    private static final class Heartbeat {
        private final long periodNanos;
        private long last = System.nanoTime();

        Heartbeat(Duration period) {
            this.periodNanos = period.toNanos();
        }

        long millisLeft() {
            return Math.max(1, (last + periodNanos - System.nanoTime()) / 1_000_000);
        }

        boolean due() {
            return System.nanoTime() - last >= periodNanos;
        }

        void wrote() {
            last = System.nanoTime();
        }
    }

    private static void event(OutputStream os, String data) throws IOException {
        os.write(("data: " + data + "\n\n").getBytes(StandardCharsets.UTF_8));
        os.flush();
    }

    private static ApiException shuttingDown() {
        return new ApiException(503, "server_error", null, "shutting_down",
                "the server shut down before the answer was complete");
    }

    /** The identity of one answer and the JSON shapes of its parts. */
    private final class Response {
        final Requests.Kind kind;
        final String id;
        final long created;
        final int promptTokens;

        Response(Requests.Kind kind, String id, long created, int promptTokens) {
            this.kind = kind;
            this.id = id;
            this.created = created;
            this.promptTokens = promptTokens;
        }

        Map<String, Object> usage(Job.Done d) {
            return Json.obj("prompt_tokens", promptTokens, "completion_tokens", d.completionTokens(),
                    "total_tokens", promptTokens + d.completionTokens());
        }

        Map<String, Object> complete(String text, Job.Done d) {
            Map<String, Object> choice = kind == Requests.Kind.CHAT
                    ? Json.obj("index", 0, "message", Json.obj("role", "assistant", "content", text), "logprobs",
                            null, "finish_reason", d.finishReason())
                    : Json.obj("index", 0, "text", text, "logprobs", null, "finish_reason", d.finishReason());
            return Json.obj("id", id, "object", kind == Requests.Kind.CHAT ? "chat.completion" : "text_completion",
                    "created", created, "model", backend.modelId(), "choices", List.of(choice), "usage", usage(d));
        }

        /** A chunk: {@code delta} is a chat delta object or a completion's text piece. */
        String chunk(Object delta, String finishReason) {
            Map<String, Object> choice = kind == Requests.Kind.CHAT
                    ? Json.obj("index", 0, "delta", delta, "logprobs", null, "finish_reason", finishReason)
                    : Json.obj("index", 0, "text", delta, "logprobs", null, "finish_reason", finishReason);
            return Json.write(Json.obj("id", id, "object", kind == Requests.Kind.CHAT ? "chat.completion.chunk"
                    : "text_completion", "created", created, "model", backend.modelId(), "choices", List.of(choice)));
        }

        String usageChunk(Job.Done d) {
            return Json.write(Json.obj("id", id, "object", kind == Requests.Kind.CHAT ? "chat.completion.chunk"
                    : "text_completion", "created", created, "model", backend.modelId(), "choices", List.of(),
                    "usage", usage(d)));
        }
    }

    // ---- responses --------------------------------------------------------------------------------------------

    private static void sendJson(HttpExchange ex, int status, Object body) throws IOException {
        send(ex, status, Json.write(body).getBytes(StandardCharsets.UTF_8));
    }

    private static void send(HttpExchange ex, int status, byte[] bytes) throws IOException {
        ex.getResponseHeaders().set("Content-Type", "application/json; charset=utf-8");
        if (ex.getRequestMethod().equals("HEAD")) {
            ex.sendResponseHeaders(status, -1);
            return;
        }
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(bytes);
        }
    }

    private static void sendErrorQuietly(HttpExchange ex, ApiException e) {
        if (ex.getResponseCode() != -1) {
            return; // headers already went out; the stream/answer code reported the error in the body
        }
        try {
            if (e.status() == 405) {
                ex.getResponseHeaders().set("Allow", ex.getRequestURI().getPath().startsWith("/v1/c")
                        ? "POST" : "GET, HEAD");
            }
            if (e.status() == 413) {
                ex.getResponseHeaders().set("Connection", "close"); // the unread body makes the connection unusable
            }
            if (e.status() == 429 || e.status() == 503) {
                ex.getResponseHeaders().set("Retry-After", "1");
            }
            sendJson(ex, e.status(), e.body());
        } catch (IOException ignored) {
            // The client went away.
        }
    }

    // ---- shutdown ---------------------------------------------------------------------------------------------

    /**
     * Shuts down gracefully with the configured grace period and closes the backend. Idempotent; a second
     * caller waits for the first to finish.
     */
    @Override
    public void close() {
        shutdown(config.shutdownGrace());
    }

    /**
     * Shuts down gracefully: new generation requests get 503 (and {@code /health} reports
     * {@code shutting_down}), admitted requests get up to {@code grace} to finish, what is left is cancelled,
     * then the listener and all connections close, the workers stop and the backend is closed.
     *
     * @param grace how long admitted requests may still run
     */
    public void shutdown(Duration grace) {
        if (!closing.compareAndSet(false, true)) {
            awaitTermination();
            return;
        }
        try {
            scheduler.stopAccepting();
            boolean drained = scheduler.awaitIdle(grace);
            if (!drained) {
                scheduler.cancelAll();
                scheduler.awaitIdle(Duration.ofSeconds(30));
            }
            // Every job has ended; give the exchanges a moment to write their last bytes, then close the
            // listener and every connection. HttpServer.stop's own wait would also count exchanges whose client
            // broke off mid-request, which never complete.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (activeExchanges.get() > 0 && System.nanoTime() - deadline < 0) {
                Thread.sleep(5);
            }
            http.stop(0);
            scheduler.stopWorkers(Duration.ofSeconds(10));
            exchanges.shutdown();
            exchanges.awaitTermination(5, TimeUnit.SECONDS);
            backend.close();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            terminated.countDown();
        }
    }

    /** Blocks until {@link #shutdown} has finished (in any thread). */
    public void awaitTermination() {
        boolean interrupted = false;
        while (true) {
            try {
                terminated.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public String toString() {
        return "OpenAiServer[" + baseUri() + ", " + backend + "]";
    }
}

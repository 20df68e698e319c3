package org.flatquant.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Set;
import org.flatquant.Engine;
import org.flatquant.cli.Args.UsageException;
import org.flatquant.cli.Main.CliException;
import org.flatquant.serve.ModelBackend;
import org.flatquant.serve.OpenAiServer;
import org.flatquant.serve.ServerConfig;

/**
 * {@code flatquant serve}: the OpenAI-compatible HTTP service ({@link OpenAiServer}) on one model. Runs until
 * the process gets SIGINT or SIGTERM, then shuts down gracefully.
 */
public final class ServeCommand {
    static final String USAGE = """
            usage: flatquant serve --model M.gguf [options]
                   flatquant serve --quantized Q.gguf [options]

            An OpenAI-compatible HTTP service: POST /v1/completions, POST /v1/chat/completions (both stream
            with "stream": true), GET /v1/models, GET /health. Stops gracefully on Ctrl-C or SIGTERM.

            --quantized Q.gguf serves a quantized-model file (flatquant quantize) instead of --model.

            options:
              --host H               address to bind (default 127.0.0.1: this machine only)
              --port P               TCP port (default 8080; 0 picks a free one)
              --device D             cpu (default), cuda or cuda:N
              --threads N            CPU worker threads (0 = one per core, the default)
              --sessions N           requests generated at once, one queue each (default 1)
              --ctx N                KV-cache tokens per session (default: the model's context, at most 4096)
              --max-prompt-tokens N  longest prompt accepted (default: the context length minus one)
              --max-tokens N         largest max_tokens a request may ask for; chat default (default 512)
              --max-concurrent N     requests queued or running at once; more get HTTP 429 (default 16)
              --max-body-bytes N     largest request body; larger ones get HTTP 413 (default 1048576)
              --heartbeat-ms N       longest silence on a response before a keep-alive (default 1000)
              --grace-seconds N      time running requests get to finish at shutdown (default 10)
              --model-id NAME        the id clients pass as "model" (default: the file name without .gguf)
              --chat-format F        auto (default: ChatML when the model's template is ChatML, else plain),
                                     chatml, or plain ("role: content" lines)
              -h, --help             this text

            exit status: 130 or 143 after Ctrl-C or SIGTERM (the JVM's status for the signal; the shutdown
            itself is graceful), 1 error, 2 malformed command line""";

    private static final Set<String> OPTIONS = Set.of("--model", "--quantized", "--host", "--port", "--device",
            "--threads", "--sessions", "--ctx", "--max-prompt-tokens", "--max-tokens", "--max-concurrent",
            "--max-body-bytes", "--heartbeat-ms", "--grace-seconds", "--model-id", "--chat-format");

    private ServeCommand() {
    }

    /**
     * Runs {@code serve} until the process is asked to stop.
     *
     * @param args the whole command line, {@code args[0]} being {@code "serve"}
     * @param out where the help goes
     * @param err where status lines and errors go
     * @return 0 when the server ends without a signal (a signal ends the JVM with its own status), 0 after
     *     {@code --help}, 2 for a malformed command line
     * @throws org.flatquant.FlatQuantException when the model cannot be loaded (exit status 1 in {@link Main})
     */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return 0;
        }
        OpenAiServer server;
        try {
            server = start(args, err);
        } catch (UsageException e) {
            err.println("error: " + e.getMessage());
            err.println(USAGE);
            return 2;
        }
        Thread hook = Thread.ofPlatform().name("flatquant-serve-shutdown").unstarted(() -> {
            err.println("shutting down: finishing admitted requests");
            server.close();
            err.println("stopped");
            err.flush();
        });
        Runtime.getRuntime().addShutdownHook(hook);
        server.awaitTermination();
        return 0;
    }

    /**
     * Parses the command line, loads the model and starts the server without waiting for it to end.
     *
     * @param args the whole command line, {@code args[0]} being {@code "serve"}
     * @param err where the "listening" line goes
     * @return the running server; close it to stop
     * @throws RuntimeException for a malformed command line ({@code Args.UsageException}), a missing model or a
     *     port in use ({@code Main.CliException}), or a model that cannot be loaded
     */
    public static OpenAiServer start(String[] args, PrintStream err) {
        Args a = Args.parse("serve", args, 1, OPTIONS, Set.of());
        ServerConfig config = ServerConfig.defaults();
        config = config.withAddress(a.get("--host", config.host()),
                a.intValue("--port", config.port(), 0, 65535));
        config = config.withLimits(a.intValue("--max-prompt-tokens", 0, 0, Integer.MAX_VALUE),
                a.intValue("--max-tokens", config.maxTokens(), 1, Integer.MAX_VALUE),
                a.intValue("--max-concurrent", config.maxConcurrent(), 1, 1 << 20));
        config = config.withMaxBodyBytes(a.intValue("--max-body-bytes", config.maxBodyBytes(), 1024,
                Integer.MAX_VALUE));
        config = config.withTimings(Duration.ofMillis(a.intValue("--heartbeat-ms", 1000, 10, 3_600_000)),
                Duration.ofSeconds(a.intValue("--grace-seconds", 10, 0, 86_400)));
        int sessions = a.intValue("--sessions", 1, 1, 1024);
        int ctx = a.intValue("--ctx", 0, 0, Integer.MAX_VALUE);
        ModelBackend.ChatMode chat;
        try {
            chat = ModelBackend.ChatMode.parse(a.get("--chat-format", "auto"));
        } catch (IllegalArgumentException e) {
            throw new UsageException("--chat-format must be auto, chatml or plain, got '"
                    + a.get("--chat-format", "") + "'");
        }
        // serve takes no QUANT flags (Args refuses them), so this only chooses between --model and --quantized.
        Path path = QuantFlags.parse(a, "--seed").existingPath();
        Engine engine = Main.engine(a);
        ModelBackend backend;
        try {
            backend = ModelBackend.open(engine, path, sessions, ctx, a.get("--model-id", null), chat);
        } catch (IllegalArgumentException e) {
            throw new CliException(e.getMessage()); // e.g. --chat-format chatml on a model without the markers
        }
        OpenAiServer server;
        try {
            server = OpenAiServer.start(backend, config);
        } catch (IOException e) {
            backend.close();
            throw new CliException("cannot listen on " + config.host() + ":" + config.port() + ": " + e.getMessage());
        }
        err.printf("serving %s on %s/v1 (%s)%n", backend.modelId(), server.baseUri(), backend);
        err.flush();
        return server;
    }
}

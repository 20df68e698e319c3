package org.flatquant.serve;

import java.time.Duration;
import java.util.Objects;

/**
 * Where {@link OpenAiServer} listens and the limits it enforces. Immutable; start from {@link #defaults()} and
 * adjust with the {@code with*} methods.
 *
 * @param host the address to bind; {@code 127.0.0.1} (the default) serves this machine only
 * @param port the TCP port; 0 picks a free one (see {@link OpenAiServer#port()})
 * @param maxPromptTokens the longest prompt accepted, in tokens; 0 means the session's context length minus one
 * @param maxTokens the largest {@code max_tokens} a request may ask for; also the default of chat requests
 * @param maxConcurrent requests queued or running at once; more are refused with HTTP 429
 * @param maxBodyBytes the largest request body; larger ones are refused with HTTP 413
 * @param heartbeat how long a response may stay silent: streaming responses then send an SSE comment, other
 *     responses start early with status 200 and send a space (JSON allows leading whitespace). Either write
 *     fails once the client has gone, which cancels the request.
 * @param shutdownGrace how long {@link OpenAiServer#close()} lets running requests finish before cancelling them
 * @since 0.1
 */
public record ServerConfig(String host, int port, int maxPromptTokens, int maxTokens, int maxConcurrent,
                           int maxBodyBytes, Duration heartbeat, Duration shutdownGrace) {

    /**
     * Validates the configuration.
     *
     * @throws IllegalArgumentException for a value out of range
     */
    public ServerConfig {
        Objects.requireNonNull(host, "host");
        Objects.requireNonNull(heartbeat, "heartbeat");
        Objects.requireNonNull(shutdownGrace, "shutdownGrace");
        check(port >= 0 && port <= 65535, "port must be between 0 and 65535, got " + port);
        check(maxPromptTokens >= 0, "maxPromptTokens must be 0 (the context) or positive, got " + maxPromptTokens);
        check(maxTokens >= 1, "maxTokens must be at least 1, got " + maxTokens);
        check(maxConcurrent >= 1, "maxConcurrent must be at least 1, got " + maxConcurrent);
        check(maxBodyBytes >= 1024, "maxBodyBytes must be at least 1024, got " + maxBodyBytes);
        check(heartbeat.toMillis() >= 10, "heartbeat must be at least 10 ms, got " + heartbeat);
        check(!shutdownGrace.isNegative(), "shutdownGrace must not be negative, got " + shutdownGrace);
    }

    private static void check(boolean ok, String message) {
        if (!ok) {
            throw new IllegalArgumentException(message);
        }
    }

    /**
     * Loopback on port 8080; prompts up to the context; 512 new tokens at most; 16 concurrent requests; 1 MiB
     * bodies; a heartbeat every second; 10 seconds of grace at shutdown.
     *
     * @return the defaults
     */
    public static ServerConfig defaults() {
        return new ServerConfig("127.0.0.1", 8080, 0, 512, 16, 1 << 20, Duration.ofSeconds(1),
                Duration.ofSeconds(10));
    }

    /**
     * A copy listening elsewhere.
     *
     * @param newHost the bind address
     * @param newPort the port, 0 for any free one
     * @return the new configuration
     */
    public ServerConfig withAddress(String newHost, int newPort) {
        return new ServerConfig(newHost, newPort, maxPromptTokens, maxTokens, maxConcurrent, maxBodyBytes,
                heartbeat, shutdownGrace);
    }

    /**
     * A copy with other request limits.
     *
     * @param newMaxPromptTokens the longest prompt in tokens, 0 for the context length minus one
     * @param newMaxTokens the largest {@code max_tokens}
     * @param newMaxConcurrent requests queued or running at once
     * @return the new configuration
     */
    public ServerConfig withLimits(int newMaxPromptTokens, int newMaxTokens, int newMaxConcurrent) {
        return new ServerConfig(host, port, newMaxPromptTokens, newMaxTokens, newMaxConcurrent, maxBodyBytes,
                heartbeat, shutdownGrace);
    }

    /**
     * A copy with another body limit.
     *
     * @param bytes the largest request body
     * @return the new configuration
     */
    public ServerConfig withMaxBodyBytes(int bytes) {
        return new ServerConfig(host, port, maxPromptTokens, maxTokens, maxConcurrent, bytes, heartbeat,
                shutdownGrace);
    }

    /**
     * A copy with other timings.
     *
     * @param newHeartbeat the longest silence on a response
     * @param newShutdownGrace how long running requests may finish at shutdown
     * @return the new configuration
     */
    public ServerConfig withTimings(Duration newHeartbeat, Duration newShutdownGrace) {
        return new ServerConfig(host, port, maxPromptTokens, maxTokens, maxConcurrent, maxBodyBytes, newHeartbeat,
                newShutdownGrace);
    }
}

package org.flatquant.serve;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The test client: the JDK's {@link HttpURLConnection} for well-formed HTTP, a raw socket for what no client
 * library would send. Every call has connect and read timeouts, so a broken server fails the test instead of
 * hanging it.
 */
final class Http {
    static final int TIMEOUT_MS = 30_000;

    private Http() {
    }

    /** A response: status, headers, body as text. */
    record Reply(int status, Map<String, List<String>> headers, String body) {
        String header(String name) {
            for (Map.Entry<String, List<String>> e : headers.entrySet()) {
                if (e.getKey() != null && e.getKey().equalsIgnoreCase(name)) {
                    return e.getValue().get(0);
                }
            }
            return null;
        }

        /** The parsed JSON body. */
        @SuppressWarnings("unchecked")
        Map<String, Object> json() {
            try {
                return (Map<String, Object>) Json.parse(body.strip());
            } catch (Json.ParseException e) {
                throw new AssertionError("not JSON: " + body, e);
            }
        }

        /** The data lines of a server-sent event stream, in order. */
        List<String> events() {
            List<String> out = new ArrayList<>();
            for (String block : body.split("\n\n")) {
                for (String line : block.split("\n")) {
                    if (line.startsWith("data: ")) {
                        out.add(line.substring(6));
                    }
                }
            }
            return out;
        }
    }

    static Reply get(URI base, String path) throws IOException {
        return request(base, "GET", path, null);
    }

    static Reply post(URI base, String path, String body) throws IOException {
        return request(base, "POST", path, body);
    }

    static Reply request(URI base, String method, String path, String body) throws IOException {
        HttpURLConnection c = open(base, method, path);
        if (body != null) {
            c.setDoOutput(true);
            c.setRequestProperty("Content-Type", "application/json");
            byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
            c.setFixedLengthStreamingMode(bytes.length);
            try (OutputStream os = c.getOutputStream()) {
                os.write(bytes);
            }
        }
        int status = c.getResponseCode();
        InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
        String text = in == null ? "" : new String(in.readAllBytes(), StandardCharsets.UTF_8);
        if (in != null) {
            in.close();
        }
        return new Reply(status, c.getHeaderFields(), text);
    }

    /** An open connection, for tests that read part of a response and then hang up. */
    static HttpURLConnection open(URI base, String method, String path) throws IOException {
        HttpURLConnection c = (HttpURLConnection) base.resolve(path).toURL().openConnection();
        c.setRequestMethod(method);
        c.setConnectTimeout(TIMEOUT_MS);
        c.setReadTimeout(TIMEOUT_MS);
        c.setUseCaches(false);
        return c;
    }

    /**
     * Sends raw bytes and reads the response until the server closes the connection or {@code Connection: close}
     * semantics end it.
     *
     * @return the raw response text
     */
    static String raw(URI base, byte[] request) throws IOException {
        try (Socket s = new Socket(base.getHost(), base.getPort())) {
            s.setSoTimeout(TIMEOUT_MS);
            s.getOutputStream().write(request);
            s.getOutputStream().flush();
            s.shutdownOutput();
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            InputStream in = s.getInputStream();
            byte[] chunk = new byte[4096];
            int r;
            try {
                while ((r = in.read(chunk)) > 0) {
                    buf.write(chunk, 0, r);
                }
            } catch (java.net.SocketException e) {
                // A reset after the response was written still leaves the response in the buffer.
            }
            return buf.toString(StandardCharsets.ISO_8859_1);
        }
    }

    /** The status code of a raw HTTP response text, or -1 when there is none. */
    static int rawStatus(String response) {
        if (!response.startsWith("HTTP/1.")) {
            return -1;
        }
        return Integer.parseInt(response.substring(9, 12));
    }
}

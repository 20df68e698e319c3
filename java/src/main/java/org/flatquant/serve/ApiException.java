package org.flatquant.serve;

import java.util.Map;

/**
 * A request the service refuses, with the HTTP status and the OpenAI error object it answers with:
 * {@code {"error": {"message", "type", "param", "code"}}}.
 */
final class ApiException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String type;
    private final String param;
    private final String code;

    ApiException(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: the request is malformed or asks for something out of range. */
    static ApiException invalid(String param, String message) {
        return new ApiException(400, "invalid_request_error", param, null, message);
    }

    /** 400 with a machine-readable code, e.g. {@code context_length_exceeded}. */
    static ApiException invalid(String param, String code, String message) {
        return new ApiException(400, "invalid_request_error", param, code, message);
    }

    int status() {
        return status;
    }

    String type() {
        return type;
    }

    /** The OpenAI error body. */
    Map<String, Object> body() {
        return Json.obj("error", Json.obj("message", getMessage(), "type", type, "param", param, "code", code));
    }
}

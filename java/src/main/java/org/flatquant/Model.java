package org.flatquant;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_DOUBLE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import org.flatquant.bindings.fq_model_info;
import org.flatquant.bindings.fq_model_options;
import org.flatquant.bindings.fq_perplexity_options;
import org.flatquant.bindings.fq_perplexity_result;
import org.flatquant.bindings.fq_quantize_options;

/**
 * A LLaMA-family model loaded from a GGUF file: weights, configuration and tokenizer.
 *
 * <p>Thread safe: a model is immutable after loading, and any number of threads may call it at once. It must
 * outlive its sessions: {@link #close()} throws {@link IllegalStateException} while a {@link Session} or
 * {@link BatchSession} of it is open (closing is refused, not deferred), and also while another thread is inside a
 * call on it. After {@code close()} every method throws {@link IllegalStateException}.
 *
 * <pre>{@code
 * try (Engine engine = Engine.cpu();
 *      Model model = Model.load(engine, Path.of("stories260K.gguf"))) {
 *     int[] ids = model.tokenizer().encode("Once upon a time", Bos.DEFAULT);
 *     float[] logits = model.logits(ids);   // [ids.length][vocabSize], row-major
 * }
 * }</pre>
 *
 * @since 0.1
 */
public final class Model extends NativeResource {
    private final Engine engine;
    private final Path path;
    private final ModelInfo info;
    private final Tokenizer tokenizer;

    /** Makes the native model and returns its raw handle (checked: a failure throws and leaves nothing). */
    @FunctionalInterface
    private interface Maker {
        MemorySegment make(Arena call);
    }

    private Model(Engine engine, Path path, Maker maker) {
        super("model", "session(s)");
        this.engine = engine;
        this.path = path;
        // Every model handle, quantized ones included, uses the engine's runtime, which must outlive it.
        engine.retain();
        boolean adopted = false;
        boolean ok = false;
        try (Arena call = Arena.ofConfined()) {
            MemorySegment raw = maker.make(call);
            adopt(raw, h -> {
                fq_model_free(h);
                engine.release();
            });
            adopted = true;
            this.info = readInfo(call);
            this.tokenizer = new Tokenizer(this);
            ok = true;
        } finally {
            if (!ok) {
                if (adopted) {
                    close();
                } else {
                    engine.release();
                }
            }
        }
    }

    /**
     * Loads a GGUF model (versions 2 and 3); quantized weights are dequantized to FP32.
     *
     * <p>The file may also be a quantized-model file written by {@link #saveQuantized}: the model is then a quantized
     * model ({@link ModelInfo#isQuantized()} and {@link ModelInfo#quantizedFile()} are true) that needs neither its
     * full-precision model nor a calibration artifact. On the CPU it runs as the same fake-quantized model
     * {@link #quantize} makes; on a CUDA engine a w4a4kv4 file runs with the real W4A4 kernels
     * ({@link ModelInfo#evalEngine()} and {@link ModelInfo#sessionEngine()} say which engine runs what).
     *
     * @param engine where the model runs; must stay open while the model is
     * @param path the {@code .gguf} file, or a quantized-model file
     * @return the model; close it
     * @throws NotFoundException when the file does not exist
     * @throws ModelFormatException when the file is truncated, corrupt or inconsistent
     * @throws UnsupportedInputException when the architecture, a tensor type or the tokenizer is not supported, or
     *     the quantized-model file has a newer format
     * @throws IllegalStateException when the engine is closed
     */
    public static Model load(Engine engine, Path path) {
        Objects.requireNonNull(engine, "engine");
        Objects.requireNonNull(path, "path");
        Path file = path.toAbsolutePath();
        if (!Files.exists(file)) {
            throw new NotFoundException("model file not found: " + path);
        }
        if (Files.isDirectory(file)) {
            throw new InvalidArgumentException("model path is a directory, not a .gguf file: " + path);
        }
        return new Model(engine, file, call -> {
            MemorySegment err = Native.error(call);
            MemorySegment opts = fq_model_options.allocate(call);
            fq_model_options_init(opts);
            MemorySegment out = call.allocate(C_POINTER);
            Native.check(fq_model_load(engine.handle(), call.allocateFrom(file.toString()), opts, out, err), err);
            return out.get(C_POINTER, 0);
        });
    }

    /**
     * The fake-quantized model of this full-precision model, without progress reports. See
     * {@link #quantize(QuantizeOptions, ProgressListener)}.
     *
     * @param options the artifact, or the bit widths and method
     * @return a new model; close it
     */
    public Model quantize(QuantizeOptions options) {
        return quantize(options, null);
    }

    /**
     * Makes the fake-quantized model of this full-precision model: the transforms (learned ones from a calibration
     * artifact, or rotate's random rotations) merged into the weights in float64, the weights quantized (RTN, or the
     * artifact's GPTQ codes), and the online transforms and the activation and K/V quantizers applied in every
     * forward pass. The result is a {@code Model} like any other: tokenizer, logits, log-likelihood, perplexity and
     * sessions; its {@link ModelInfo} names the scheme.
     *
     * <p>It shares this model's embeddings and tokenizer natively and keeps them alive on its own, so either model
     * may be closed first; both need the engine open. From one artifact the result is the same on every call.
     *
     * @param options the artifact, or the bit widths and method
     * @param listener stages {@code "load"} and {@code "quantize"} on the calling thread, may return false to cancel;
     *     may be null
     * @return a new model; close it
     * @throws InvalidArgumentException when this model is already quantized, method flatquant has no artifact, the
     *     artifact belongs to another model (the message names both fingerprints), or the bit widths or method
     *     contradict the artifact
     * @throws NotFoundException when the artifact does not exist
     * @throws ModelFormatException when the artifact is truncated or corrupt
     * @throws UnsupportedInputException when the artifact has a newer format
     * @throws CancelledException when the listener or the options' cancellation token cancelled
     */
    public Model quantize(QuantizeOptions options, ProgressListener listener) {
        Objects.requireNonNull(options, "options");
        ensureOpen();
        if (info.isQuantized()) {
            throw new InvalidArgumentException("the model is already quantized (" + info.quant() + " "
                    + info.method() + "): quantize its full-precision model instead");
        }
        Path artifact = options.artifact() == null ? null : options.artifact().toAbsolutePath();
        if (artifact == null && options.method() == QuantMethod.FLATQUANT) {
            throw new InvalidArgumentException("method flatquant needs a calibration artifact (make one with "
                    + "Calibrator or `flatquant calibrate`); rtn and rotate need none");
        }
        if (artifact != null && Files.isDirectory(artifact)) {
            throw new InvalidArgumentException("the artifact path is a directory: " + options.artifact());
        }
        CancellationToken token = options.cancellation();
        if (token != null) {
            token.retain();
        }
        try {
            return new Model(engine, path, call -> {
                MemorySegment err = Native.error(call);
                MemorySegment opts = fq_quantize_options.allocate(call);
                fq_quantize_options_init(opts);
                if (artifact != null) {
                    fq_quantize_options.artifact(opts, call.allocateFrom(artifact.toString()));
                }
                if (options.quant() != null) {
                    fq_quantize_options.quant(opts, call.allocateFrom(options.quant().toString()));
                }
                if (options.method() != null) {
                    fq_quantize_options.method(opts, call.allocateFrom(options.method().id()));
                }
                fq_quantize_options.seed(opts, options.seed());
                Upcall upcall = Upcall.of(listener);
                if (upcall != null) {
                    fq_quantize_options.progress(opts, upcall.progressStub(call));
                }
                if (token != null) {
                    fq_quantize_options.cancel(opts, token.handle());
                }
                MemorySegment out = call.allocate(C_POINTER);
                int status = fq_model_quantize(handle(), opts, out, err);
                if (upcall != null && upcall.stopped()) {
                    if (status == Status.OK) {
                        // The listener stopped after the last check: the model exists, the caller gets the verdict.
                        fq_model_free(out.get(C_POINTER, 0));
                    }
                    upcall.rethrow();
                    if (status == Status.OK) {
                        throw new CancelledException("cancelled by the progress listener");
                    }
                }
                Native.check(status, err);
                return out.get(C_POINTER, 0);
            });
        } finally {
            if (token != null) {
                token.release();
            }
        }
    }

    private ModelInfo readInfo(Arena call) {
        MemorySegment err = Native.error(call);
        MemorySegment s = fq_model_info.allocate(call);
        fq_model_info_init(s);
        Native.check(fq_model_get_info(handle(), s, err), err);
        return ModelInfo.of(s);
    }

    /**
     * Saves this quantized model as a quantized-model file, without progress reports or cancellation. See
     * {@link #saveQuantized(Path, ProgressListener, CancellationToken)}.
     *
     * @param path the file to write; its directory must exist
     */
    public void saveQuantized(Path path) {
        saveQuantized(path, null, null);
    }

    /**
     * Saves this quantized model (made by {@link #quantize}, or itself loaded from a quantized-model file) as a
     * quantized-model file: a GGUF file with the full-precision model's metadata, tokenizer, embeddings, final norm
     * and output projection as they were, and per layer the packed integer weight codes with their scales, the
     * online transforms, the norms with the smoothing folded in and the learned clipping values
     * ({@code docs/quantized-model-format.md}). {@link #load} reads it back, without the full-precision model or the
     * calibration artifact, as a model that computes on the CPU exactly what this one computes.
     *
     * <p>The write is atomic: on any failure or cancellation the file at {@code path} is left as it was and no
     * temporary file remains.
     *
     * @param path the file to write; its directory must exist
     * @param listener stage {@code "save"} on the calling thread, may return false (or throw) to cancel; may be null
     * @param cancellation a token that cancels the save from another thread; may be null
     * @throws InvalidArgumentException when this model is full precision (quantize it first), or {@code path} names
     *     a directory
     * @throws NotFoundException when the directory of {@code path} does not exist
     * @throws UnsupportedInputException when the weights are not quantized (16-bit weights, e.g. {@code w16a8}:
     *     there are no integer codes to store)
     * @throws NativeIoException when the file cannot be written
     * @throws CancelledException when the listener or the token cancelled
     * @throws IllegalStateException when this model or the token is closed
     */
    public void saveQuantized(Path path, ProgressListener listener, CancellationToken cancellation) {
        Objects.requireNonNull(path, "path");
        ensureOpen();
        if (!info.isQuantized()) {
            throw new InvalidArgumentException("the model is full precision: only a quantized model (made by "
                    + "Model.quantize, or loaded from a quantized-model file) can be saved as a quantized-model file");
        }
        Path file = path.toAbsolutePath();
        if (Files.isDirectory(file)) {
            throw new InvalidArgumentException("the quantized-model path names a directory: " + path);
        }
        Path dir = file.getParent();
        if (dir == null || !Files.isDirectory(dir)) {
            throw new NotFoundException("the directory of the quantized-model file does not exist: " + dir);
        }
        SaveQuantizedCall.run(this, file, listener, cancellation);
    }

    /**
     * The model's configuration.
     *
     * @return the information read at load time
     */
    public ModelInfo info() {
        ensureOpen();
        return info;
    }

    /**
     * The model's tokenizer.
     *
     * @return a view of this model; it fails once the model is closed
     */
    public Tokenizer tokenizer() {
        ensureOpen();
        return tokenizer;
    }

    /**
     * The engine this model runs on.
     *
     * @return the engine given to {@link #load}
     */
    public Engine engine() {
        return engine;
    }

    /**
     * The file this model was loaded from; for a model made by {@link #quantize}, its full-precision model's file.
     *
     * @return an absolute path
     */
    public Path path() {
        return path;
    }

    /**
     * The SHA-256 of the model file (for a model made by {@link #quantize}, of its full-precision model's file): what
     * a calibration artifact records to refuse being applied to another model.
     *
     * @return 64 lowercase hex digits
     */
    public String fingerprint() {
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment buf = call.allocate(65);
            Native.check(fq_model_fingerprint(handle(), buf, buf.byteSize(), err), err);
            return Native.string(buf);
        }
    }

    /**
     * The logits of every position of one sequence, run from an empty context.
     *
     * @param tokens the token ids, 1 to {@link ModelInfo#contextLength()} of them
     * @return {@code float[tokens.length * vocabSize]}, row-major: row {@code i} scores the token after
     *     {@code tokens[i]}
     * @throws InvalidArgumentException for an empty or too long sequence or an id outside the vocabulary
     */
    public float[] logits(int[] tokens) {
        Objects.requireNonNull(tokens, "tokens");
        long floats = checkSequence(tokens);
        if (floats > Integer.MAX_VALUE - 8) {
            throw new InvalidArgumentException(tokens.length + " x " + info.vocabSize()
                    + " logits do not fit a Java array; use logits(int[], MemorySegment)");
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment out = call.allocate(JAVA_FLOAT, floats);
            logitsInto(call, tokens, out);
            return out.toArray(JAVA_FLOAT);
        }
    }

    /**
     * Zero-copy variant of {@link #logits(int[])}: writes the logits into {@code out}.
     *
     * @param tokens the token ids, 1 to {@link ModelInfo#contextLength()} of them
     * @param out at least {@code tokens.length * vocabSize} floats, native byte order; receives the row-major
     *     logits {@code [tokens.length][vocabSize]}
     * @throws InvalidArgumentException when {@code out} is too small or the tokens are invalid
     */
    public void logits(int[] tokens, MemorySegment out) {
        Objects.requireNonNull(tokens, "tokens");
        Objects.requireNonNull(out, "out");
        long floats = checkSequence(tokens);
        if (out.byteSize() < floats * Float.BYTES) {
            throw new InvalidArgumentException("out holds " + out.byteSize() / Float.BYTES + " floats, "
                    + floats + " are needed");
        }
        try (Arena call = Arena.ofConfined()) {
            logitsInto(call, tokens, out);
        }
    }

    private long checkSequence(int[] tokens) {
        ensureOpen();
        if (tokens.length == 0) {
            throw new InvalidArgumentException("no tokens given");
        }
        if (tokens.length > info.contextLength()) {
            throw new InvalidArgumentException(tokens.length + " tokens exceed the model's context length "
                    + info.contextLength());
        }
        return (long) tokens.length * info.vocabSize();
    }

    private void logitsInto(Arena call, int[] tokens, MemorySegment out) {
        MemorySegment err = Native.error(call);
        MemorySegment ids = call.allocateFrom(JAVA_INT, tokens);
        Native.check(fq_model_logits(handle(), ids, tokens.length, out, out.byteSize() / Float.BYTES, err), err);
    }

    /**
     * Perplexity of a text with the default options and no progress reports. See
     * {@link #perplexity(String, PerplexityOptions, ProgressListener)}.
     *
     * @param text the text, evaluated as UTF-8
     * @param options window length, BOS, chunk limit, cancellation
     * @return the result
     */
    public PerplexityResult perplexity(String text, PerplexityOptions options) {
        return perplexity(text, options, null);
    }

    /**
     * Perplexity as GPTQ, QuaRot and FlatQuant compute it: the text is tokenized once (with one optional BOS in
     * front), cut into non-overlapping windows of {@code seqlen} tokens (the rest is dropped), each window is
     * evaluated from an empty context, and the mean negative log-likelihood of every predicted token
     * ({@code seqlen - 1} per window) is exponentiated.
     *
     * @param text the text, evaluated as UTF-8; not empty
     * @param options window length, BOS, chunk limit, cancellation; null for {@link PerplexityOptions#defaults()}
     * @param listener progress reports on the calling thread, may return false to cancel; may be null
     * @return the result
     * @throws InvalidArgumentException for an empty text, a window longer than the model's context, or a text
     *     shorter than one window
     * @throws CancelledException when the listener or the options' cancellation token cancelled
     */
    public PerplexityResult perplexity(String text, PerplexityOptions options, ProgressListener listener) {
        Objects.requireNonNull(text, "text");
        PerplexityOptions o = options == null ? PerplexityOptions.defaults() : options;
        ensureOpen();
        if (text.isEmpty()) {
            throw new InvalidArgumentException("the text is empty");
        }
        if (o.seqlen() > info.contextLength()) {
            throw new InvalidArgumentException("seqlen " + o.seqlen() + " exceeds the model's context length "
                    + info.contextLength());
        }
        CancellationToken token = o.cancellation();
        if (token != null) {
            token.retain();
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
            MemorySegment opts = fq_perplexity_options.allocate(call);
            fq_perplexity_options_init(opts);
            fq_perplexity_options.seqlen(opts, o.seqlen());
            fq_perplexity_options.add_bos(opts, o.bos().code);
            fq_perplexity_options.max_chunks(opts, o.maxChunks());
            Upcall upcall = Upcall.of(listener);
            if (upcall != null) {
                fq_perplexity_options.progress(opts, upcall.progressStub(call));
            }
            if (token != null) {
                fq_perplexity_options.cancel(opts, token.handle());
            }
            MemorySegment res = fq_perplexity_result.allocate(call);
            fq_perplexity_result_init(res);
            int status = fq_model_perplexity(handle(), Native.utf8(call, bytes), bytes.length, opts, res, err);
            if (upcall != null) {
                upcall.rethrow();
            }
            Native.check(status, err);
            return new PerplexityResult(
                    fq_perplexity_result.ppl(res),
                    fq_perplexity_result.nll_sum(res),
                    fq_perplexity_result.n_predicted(res),
                    fq_perplexity_result.n_tokens(res),
                    fq_perplexity_result.n_chunks(res),
                    fq_perplexity_result.bos(res) != 0,
                    fq_perplexity_result.seconds(res));
        } finally {
            if (token != null) {
                token.release();
            }
        }
    }

    /**
     * The log-likelihood of a continuation after a context, as lm-evaluation-harness scores one request: the
     * sequence {@code context + continuation} is evaluated from an empty context, and the log-probabilities of the
     * continuation's tokens, each given every token before it, are summed.
     *
     * @param context the conditioning token ids, at least one (a BOS first, for models that want one)
     * @param continuation the scored token ids, at least one; {@code context.length + continuation.length} is at
     *     most {@link ModelInfo#contextLength()}
     * @return the summed natural-log probability and whether every continuation token was the argmax at its
     *     position
     * @throws InvalidArgumentException for an empty part, a too long sequence or an id outside the vocabulary
     */
    public LogLikelihood loglikelihood(int[] context, int[] continuation) {
        Objects.requireNonNull(context, "context");
        Objects.requireNonNull(continuation, "continuation");
        ensureOpen();
        if (context.length == 0 || continuation.length == 0) {
            throw new InvalidArgumentException("context (" + context.length + " tokens) and continuation ("
                    + continuation.length + " tokens) must both be non-empty");
        }
        if ((long) context.length + continuation.length > info.contextLength()) {
            throw new InvalidArgumentException(context.length + " + " + continuation.length
                    + " tokens exceed the model's context length " + info.contextLength());
        }
        // The last continuation token is only a target, never fed to the model, so it is checked here.
        for (int[] ids : new int[][] {context, continuation}) {
            for (int id : ids) {
                if (id < 0 || id >= info.vocabSize()) {
                    throw new InvalidArgumentException("token id " + id + " is outside the vocabulary [0, "
                            + info.vocabSize() + ")");
                }
            }
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment ctx = call.allocateFrom(JAVA_INT, context);
            MemorySegment cont = call.allocateFrom(JAVA_INT, continuation);
            MemorySegment logprob = call.allocate(JAVA_DOUBLE);
            MemorySegment greedy = call.allocate(JAVA_INT);
            Native.check(fq_model_loglikelihood(handle(), ctx, context.length, cont, continuation.length, logprob,
                    greedy, err), err);
            return new LogLikelihood(logprob.get(JAVA_DOUBLE, 0), greedy.get(JAVA_INT, 0) != 0);
        }
    }

    /**
     * Scores several (context, continuation) pairs in one native call: element {@code i} of the result is what
     * {@link #loglikelihood(int[], int[])} gives for {@code contexts.get(i)} and {@code continuations.get(i)}. On a
     * CUDA engine many requests share one pass over the model (each still from an empty context), which is much
     * faster than one call each; on the CPU the results are identical to single calls.
     *
     * @param contexts the contexts, each non-empty
     * @param continuations the continuations, as many, each non-empty
     * @return one result per request, in order
     * @throws InvalidArgumentException when the lists differ in size, or a request is empty, too long or holds an id
     *     outside the vocabulary (the message names the request)
     */
    public LogLikelihood[] loglikelihoods(List<int[]> contexts, List<int[]> continuations) {
        Objects.requireNonNull(contexts, "contexts");
        Objects.requireNonNull(continuations, "continuations");
        ensureOpen();
        if (contexts.size() != continuations.size()) {
            throw new InvalidArgumentException(contexts.size() + " contexts but " + continuations.size()
                    + " continuations");
        }
        int n = contexts.size();
        long total = 0;
        for (int i = 0; i < n; i++) {
            total += (long) Objects.requireNonNull(contexts.get(i), "context").length
                    + Objects.requireNonNull(continuations.get(i), "continuation").length;
        }
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment tokens = call.allocate(JAVA_INT, Math.max(1, total));
            MemorySegment offsets = call.allocate(JAVA_LONG, n + 1L);
            MemorySegment nContext = call.allocate(JAVA_LONG, Math.max(1, n));
            long at = 0;
            for (int i = 0; i < n; i++) {
                int[] ctx = contexts.get(i);
                int[] cont = continuations.get(i);
                offsets.setAtIndex(JAVA_LONG, i, at);
                nContext.setAtIndex(JAVA_LONG, i, ctx.length);
                MemorySegment.copy(ctx, 0, tokens, JAVA_INT, at * Integer.BYTES, ctx.length);
                at += ctx.length;
                MemorySegment.copy(cont, 0, tokens, JAVA_INT, at * Integer.BYTES, cont.length);
                at += cont.length;
            }
            offsets.setAtIndex(JAVA_LONG, n, at);
            MemorySegment logprob = call.allocate(JAVA_DOUBLE, Math.max(1, n));
            MemorySegment greedy = call.allocate(JAVA_INT, Math.max(1, n));
            Native.check(fq_model_loglikelihood_batch(handle(), tokens, offsets, nContext, n, logprob, greedy, err),
                    err);
            LogLikelihood[] out = new LogLikelihood[n];
            for (int i = 0; i < n; i++) {
                out[i] = new LogLikelihood(logprob.getAtIndex(JAVA_DOUBLE, i), greedy.getAtIndex(JAVA_INT, i) != 0);
            }
            return out;
        }
    }

    /**
     * One scored continuation; see {@link #loglikelihood(int[], int[])}.
     *
     * @param logprob the sum of the continuation tokens' natural-log probabilities (at most 0)
     * @param greedy true when each continuation token was the most likely token at its position (ties go to the
     *     lowest id)
     */
    public record LogLikelihood(double logprob, boolean greedy) {
    }

    /**
     * A session with a KV cache as long as the model's context (at most 4096 tokens).
     *
     * @return a new session; close it before the model
     */
    public Session newSession() {
        return new Session(this, 0);
    }

    /**
     * A session with a KV cache of {@code contextLength} tokens.
     *
     * @param contextLength tokens the session can hold, 1 to {@link ModelInfo#contextLength()}
     * @return a new session; close it before the model
     */
    public Session newSession(int contextLength) {
        if (contextLength < 1) {
            throw new InvalidArgumentException("a session's context length is at least 1, got " + contextLength);
        }
        return new Session(this, contextLength);
    }

    /**
     * A session that decodes {@code sequences} sequences together, each with a KV cache of {@code contextLength}
     * tokens. On a GPU one step serves the whole batch; see {@link BatchSession}.
     *
     * @param sequences sequences in the batch, 1 to 256
     * @param contextLength tokens each sequence can hold, 1 to {@link ModelInfo#contextLength()}
     * @return a new batch session; close it before the model
     * @throws InvalidArgumentException when either number is out of range
     */
    public BatchSession newBatchSession(int sequences, int contextLength) {
        if (contextLength < 1) {
            throw new InvalidArgumentException("a session's context length is at least 1, got " + contextLength);
        }
        return new BatchSession(this, sequences, contextLength);
    }

    /** Detokenizes to raw UTF-8 bytes, which may end inside a character (streaming needs that). */
    byte[] detokenizeBytes(int[] tokens) {
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment ids = call.allocateFrom(JAVA_INT, tokens.length == 0 ? new int[1] : tokens);
            MemorySegment n = call.allocate(C_LONG_LONG);
            long capacity = 16L * tokens.length + 16;
            MemorySegment buf = call.allocate(capacity);
            int status = fq_model_detokenize(handle(), ids, tokens.length, buf, capacity, n, err);
            if (status == Status.BUFFER_TOO_SMALL) {
                capacity = n.get(C_LONG_LONG, 0);
                buf = call.allocate(Math.max(1, capacity));
                err = Native.error(call);
                status = fq_model_detokenize(handle(), ids, tokens.length, buf, capacity, n, err);
            }
            Native.check(status, err);
            return buf.asSlice(0, n.get(C_LONG_LONG, 0)).toArray(JAVA_BYTE);
        }
    }

    @Override
    public String toString() {
        if (isClosed()) {
            return "Model[closed]";
        }
        String quant = info.isQuantized() ? ", " + info.quant() + " " + info.method() + " (" + info.weightQuantizer()
                + " weights)" : "";
        return "Model[" + info.architecture() + ", " + path.getFileName() + quant + "]";
    }
}

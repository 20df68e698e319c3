package org.flatquant.benchmarks;

import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.flatquant.Engine;
import org.flatquant.FlatQuant;
import org.flatquant.Model;
import org.flatquant.Session;
import org.flatquant.bindings.fq_error;
import org.flatquant.bindings.fq_model_options;
import org.flatquant.bindings.fq_runtime_options;
import org.flatquant.bindings.fq_session_options;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Per-token decode latency: one token appended to a KV cache holding {@code context} to
 * {@code context + WINDOW - 1} tokens, returning its logits. {@code SampleTime} gives the distribution
 * (p50, p90, p99), which is what a streaming client feels between two tokens.
 *
 * <p>Two ways into the same native step ({@code impl}):
 * <ul>
 *   <li>{@code api}: {@link Session#decode(int[])}, the public API: a confined arena per call, the token copied in,
 *       the logits copied out into a new {@code float[vocab]};</li>
 *   <li>{@code ffm}: {@code fq_session_decode} through the generated binding with segments allocated once, the
 *       floor for any Java caller.</li>
 * </ul>
 * {@code benchmarks/native/decode_latency.cpp} times the same step from C++ with the same model, tokens and
 * positions; {@code benchmarks/results/} puts the three side by side. Both paths copy the logits to host memory,
 * so on a GPU the time includes the wait for the step's kernels.
 *
 * <p>Tokens come from the benchmark text (teacher forcing: no sampling in the timed call). When the cache reaches
 * {@code context + WINDOW}, an untimed invocation-level setup rewinds it to {@code context} tokens. Level.Invocation
 * costs a few timestamps per call, negligible next to a decode step of tens of microseconds or more.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {Bench.NATIVE_ACCESS})
public class DecodeBenchmark {
    /** Decoded positions per round: {@code [context, context + WINDOW)}. */
    public static final int WINDOW = 64;

    /** {@code cpu}, {@code cuda} or {@code cuda:N}; GPU values are dropped by {@link BenchMain} without a GPU. */
    @Param({"cpu", "cuda"})
    public String device;

    /** {@code stories260K}, {@code smollm2} or a path (see {@link Bench}). */
    @Param({"stories260K"})
    public String model;

    /** Tokens in the KV cache before the first timed token. */
    @Param({"128"})
    public int context;

    /** {@code api} (Session.decode) or {@code ffm} (the binding, preallocated segments). */
    @Param({"api", "ffm"})
    public String impl;

    private int[] text;
    private int[] prefix;
    private int pos;
    private boolean api;
    private int vocab;

    // api
    private Engine engine;
    private Model m;
    private Session session;

    // ffm: a second, independent native runtime/model/session driven through the bindings only
    private Arena arena;
    private MemorySegment rt;
    private MemorySegment rawModel;
    private MemorySegment rawSession;
    private MemorySegment token;
    private MemorySegment logits;
    private MemorySegment err;

    @Setup(Level.Trial)
    public void setup() {
        api = impl.equals("api");
        engine = Bench.engine(device);
        m = Model.load(engine, Bench.model(model));
        vocab = m.info().vocabSize();
        text = Bench.prompt(m, context + 4 * WINDOW);
        prefix = Arrays.copyOf(text, context);
        session = m.newSession(context + WINDOW);
        if (!api) {
            openRaw();
        }
        // Check before timing: fed the same tokens, the timed path gives the same logits as the API.
        session.reset();
        session.append(prefix);
        float[] viaApi = session.decode(new int[] {text[context]});
        float[] viaImpl = viaApi;
        if (!api) {
            rewind();
            viaImpl = rawDecode(text[context]);
        }
        Bench.checkFinite(viaImpl, "decode");
        if (!Arrays.equals(viaApi, viaImpl)) {
            throw new IllegalStateException("fq_session_decode through the binding differs from Session.decode");
        }
        rewind();
    }

    private void openRaw() {
        arena = Arena.ofShared();
        err = fq_error.allocate(arena);
        fq_error_init(err);
        MemorySegment ro = fq_runtime_options.allocate(arena);
        fq_runtime_options_init(ro);
        fq_runtime_options.n_threads(ro, device.equals("cpu") ? Integer.getInteger("flatquant.bench.threads", 0) : 0);
        fq_runtime_options.device(ro, device.equals("cpu") ? FQ_DEVICE_CPU() : Bench.cudaOrdinal(device));
        MemorySegment out = arena.allocate(C_POINTER);
        check(fq_runtime_create(ro, out, err));
        rt = out.get(C_POINTER, 0);
        MemorySegment mo = fq_model_options.allocate(arena);
        fq_model_options_init(mo);
        check(fq_model_load(rt, arena.allocateFrom(Bench.model(model).toString()), mo, out, err));
        rawModel = out.get(C_POINTER, 0);
        MemorySegment so = fq_session_options.allocate(arena);
        fq_session_options_init(so);
        fq_session_options.n_ctx(so, context + WINDOW);
        check(fq_session_create(rawModel, so, out, err));
        rawSession = out.get(C_POINTER, 0);
        token = arena.allocate(ValueLayout.JAVA_INT);
        logits = arena.allocate(ValueLayout.JAVA_FLOAT, vocab);
    }

    private void check(int status) {
        if (status != 0) {
            throw new IllegalStateException(FlatQuant.statusName(status) + ": "
                    + fq_error.message(err).getString(0));
        }
    }

    private float[] rawDecode(int t) {
        token.set(ValueLayout.JAVA_INT, 0, t);
        check(fq_session_decode(rawSession, token, 1, logits, vocab, err));
        return logits.toArray(ValueLayout.JAVA_FLOAT);
    }

    /** Brings the cache back to {@code context} tokens of the text. */
    private void rewind() {
        if (api) {
            session.reset();
            session.append(prefix);
        } else {
            check(fq_session_reset(rawSession, err));
            MemorySegment ids = arena.allocateFrom(ValueLayout.JAVA_INT, prefix);
            check(fq_session_decode(rawSession, ids, prefix.length, MemorySegment.NULL, 0, err));
        }
        pos = context;
    }

    @Setup(Level.Invocation)
    public void room() {
        if (pos >= context + WINDOW) {
            rewind();
        }
    }

    @Benchmark
    public float decode() {
        int t = text[pos++];
        if (api) {
            return session.decode(new int[] {t})[0];
        }
        token.set(ValueLayout.JAVA_INT, 0, t);
        int status = fq_session_decode(rawSession, token, 1, logits, vocab, err);
        if (status != 0) {
            check(status);
        }
        return logits.get(ValueLayout.JAVA_FLOAT, 0);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (rawSession != null) {
            fq_session_free(rawSession);
            fq_model_free(rawModel);
            fq_runtime_free(rt);
            arena.close();
        }
        session.close();
        m.close();
        engine.close();
    }
}

package org.flatquant.benchmarks;

import java.util.concurrent.TimeUnit;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.Session;
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
 * Prefill latency: one {@link Session#decode(int[])} of a {@code promptTokens}-token prompt into an empty KV cache,
 * as a request's time to first token sees it (without sampling).
 *
 * <p>Each call returns the last position's logits in a Java array. On a GPU that means a device-to-host copy of
 * the result, which waits for every kernel of the step: the time is the whole step, not its launch. The reset
 * of the session is part of the timed call; it only rewinds a counter.
 *
 * <p>Before timing, the logits are checked against {@link Model#logits(int[])} (whole sequence, no KV cache).
 *
 * <p>HOW TO RUN: see {@code benchmarks/README.md}; for example
 * {@code java -jar benchmarks/target/benchmarks.jar PrefillBenchmark -p device=cpu -p model=smollm2}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {Bench.NATIVE_ACCESS})
public class PrefillBenchmark {
    /** {@code cpu}, {@code cuda} or {@code cuda:N}; GPU values are dropped by {@link BenchMain} without a GPU. */
    @Param({"cpu", "cuda"})
    public String device;

    /** {@code stories260K}, {@code smollm2} or a path (see {@link Bench}). */
    @Param({"stories260K"})
    public String model;

    /** Prompt length in tokens. */
    @Param({"128", "512"})
    public int promptTokens;

    private Engine engine;
    private Model m;
    private Session session;
    private int[] prompt;

    @Setup(Level.Trial)
    public void setup() {
        engine = Bench.engine(device);
        m = Model.load(engine, Bench.model(model));
        session = m.newSession(promptTokens);
        prompt = Bench.prompt(m, promptTokens);
        float[] logits = prefill();
        Bench.checkFinite(logits, "prefill");
        // Where one engine runs both, the KV-cache path and the whole-sequence path compute the same step: allow
        // float reordering only. On a GPU a full-precision model's sessions run the FP16 engine and its evaluation
        // FP32: allow FP16 rounding of the activations (2% of the logit scale; measured ~0.2% on SmolLM2).
        double diff = Bench.maxDiffLastRow(m.logits(prompt), logits);
        boolean sameEngine = m.info().evalEngine().equals(m.info().sessionEngine());
        double tol = (sameEngine ? 1e-4 : 2e-2) * Math.max(1, Bench.maxAbs(logits));
        if (diff > tol) {
            throw new IllegalStateException("prefill logits differ from Model.logits by " + diff + " > " + tol);
        }
    }

    @Benchmark
    public float[] prefill() {
        session.reset();
        return session.decode(prompt);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        session.close();
        m.close();
        engine.close();
    }
}

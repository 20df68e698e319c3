package org.flatquant.benchmarks;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.concurrent.TimeUnit;
import org.flatquant.FlatQuant;
import org.flatquant.NativeLibrary;
import org.flatquant.bindings.flatquant_h;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;

/**
 * The fixed cost of one call from Java into libflatquant: {@code fq_noop()}, which does nothing and returns 0.
 *
 * <p>Four ways side by side, all returning the result so the JIT cannot drop the call:
 * <ul>
 *   <li>{@code baseline}: an ordinary Java method returning 0, the floor of the harness;</li>
 *   <li>{@code generatedWrapper}: the generated binding {@code flatquant_h.fq_noop()} (handle in a lazy holder,
 *       exception wrapping, the trace check);</li>
 *   <li>{@code plainHandle}: the same downcall handle invoked directly, without the wrapper;</li>
 *   <li>{@code criticalHandle}: a handle created here with {@code Linker.Option.critical(false)}, which skips the
 *       thread-state transition. Valid only for calls as short as an empty function that never call back into
 *       Java, which is the whole point of fq_noop; no other function of the library qualifies unless its header
 *       comment says so.</li>
 * </ul>
 * The gap between {@code plainHandle} and {@code criticalHandle} is the transition cost every ordinary call pays.
 *
 * <p>HOW TO RUN (opt-in; the normal build only compiles this):
 * <pre>
 *   mvn -B -Pjmh -Dflatquant.native.dir=$PWD/build/native -DskipTests install
 *   java -jar benchmarks/target/benchmarks.jar DowncallBenchmark
 * </pre>
 * The library is found as the API finds it: {@code -Dflatquant.library.path=...} given to the {@code java}
 * command above reaches the forks too, else the copy from the native jar inside benchmarks.jar is used.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 3, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class DowncallBenchmark {

    /**
     * The handles live in static final fields, as in the generated holders, so the JIT treats them as constants;
     * a handle in an instance field would be measured with an extra indirect dispatch. The class initializes on
     * first use, after {@link #setup()} has loaded the library.
     */
    private static final class Handles {
        static final MethodHandle PLAIN = flatquant_h.fq_noop$handle();
        // NativeLibrary loaded the library into this class loader, so the loader lookup finds the symbol.
        static final MethodHandle CRITICAL = Linker.nativeLinker().downcallHandle(
                SymbolLookup.loaderLookup().find("fq_noop")
                        .orElseThrow(() -> new IllegalStateException("fq_noop not found")),
                FunctionDescriptor.of(ValueLayout.JAVA_INT),
                Linker.Option.critical(false));
    }

    @Setup(Level.Trial)
    public void setup() throws Throwable {
        NativeLibrary.load();
        // Check what is timed before timing it: each way must reach fq_noop and get its 0.
        if (flatquant_h.fq_noop() != 0 || (int) Handles.PLAIN.invokeExact() != 0
                || (int) Handles.CRITICAL.invokeExact() != 0) {
            throw new IllegalStateException("fq_noop returned non-zero; library " + FlatQuant.version());
        }
    }

    @Benchmark
    public int baseline() {
        return javaNoop();
    }

    private static int javaNoop() {
        return 0;
    }

    @Benchmark
    public int generatedWrapper() {
        return flatquant_h.fq_noop();
    }

    @Benchmark
    public int plainHandle() throws Throwable {
        return (int) Handles.PLAIN.invokeExact();
    }

    @Benchmark
    public int criticalHandle() throws Throwable {
        return (int) Handles.CRITICAL.invokeExact();
    }

    /**
     * Runs this benchmark from an IDE or with {@code java -cp ...}.
     *
     * @param args ignored
     * @throws RunnerException when JMH fails
     */
    public static void main(String[] args) throws RunnerException {
        Options opt = new OptionsBuilder().include(DowncallBenchmark.class.getSimpleName()).build();
        new Runner(opt).run();
    }
}

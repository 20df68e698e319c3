package org.flatquant;

import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.flatquant.bindings.fq_runtime_options;

/**
 * A compute backend: the CPU with a pool of worker threads, or one CUDA device. Models are loaded into an engine.
 *
 * <p>Thread safe: an engine is immutable after creation and may be shared. It must outlive its models:
 * {@link #close()} throws {@link IllegalStateException} while a {@link Model} loaded with it is open.
 *
 * @since 0.1
 */
public final class Engine extends NativeResource {
    private final int threads;
    private final int device;

    private Engine(int threads, int device) {
        super("engine", "model(s)");
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment opts = fq_runtime_options.allocate(call);
            fq_runtime_options_init(opts);
            fq_runtime_options.n_threads(opts, threads);
            fq_runtime_options.device(opts, device);
            MemorySegment out = call.allocate(C_POINTER);
            Native.check(fq_runtime_create(opts, out, err), err);
            adopt(out.get(C_POINTER, 0), h -> fq_runtime_free(h));
            this.threads = fq_runtime_n_threads(handle());
            this.device = device;
        }
    }

    /**
     * A CPU engine with one worker thread per available core.
     *
     * @return a new engine; close it
     */
    public static Engine cpu() {
        return cpu(0);
    }

    /**
     * A CPU engine.
     *
     * @param threads worker threads, at least 1; 0 means one per available core
     * @return a new engine; close it
     * @throws InvalidArgumentException when {@code threads} is negative
     */
    public static Engine cpu(int threads) {
        if (threads < 0) {
            throw new InvalidArgumentException("threads must be 0 (one per core) or more, got " + threads);
        }
        return new Engine(threads, FQ_DEVICE_CPU());
    }

    /**
     * An engine on one CUDA device.
     *
     * @param device the device ordinal, 0 for the first GPU
     * @return a new engine; close it
     * @throws DeviceUnavailableException when there is no such usable device, or the library has no CUDA backend
     */
    public static Engine cuda(int device) {
        if (device < 0) {
            throw new InvalidArgumentException("a CUDA device ordinal is 0 or more, got " + device);
        }
        return new Engine(0, device);
    }

    /**
     * The number of CPU worker threads.
     *
     * @return the resolved count (never 0)
     */
    public int threads() {
        return threads;
    }

    /**
     * The CUDA device of this engine.
     *
     * @return the device ordinal, or -1 for a CPU engine
     */
    public int device() {
        return device;
    }

    /**
     * Whether this engine runs on a GPU.
     *
     * @return true for {@link #cuda(int)} engines
     */
    public boolean isCuda() {
        return device >= 0;
    }

    @Override
    public String toString() {
        return isCuda() ? "Engine[cuda:" + device + "]" : "Engine[cpu, " + threads + " threads]";
    }
}

package org.flatquant;

import static org.flatquant.bindings.flatquant_h.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Facts about the loaded native library: its version, whether it has the CUDA backend, how many GPUs it sees.
 * Every method loads the library first (see {@link NativeLibrary}). This class is thread safe.
 *
 * @since 0.1
 */
public final class FlatQuant {
    private FlatQuant() {
    }

    /**
     * The native library's version.
     *
     * @return for example {@code "0.1.0"}
     */
    public static String version() {
        NativeLibrary.load();
        return Native.staticString(fq_version_string());
    }

    /**
     * The ABI version of the loaded library; it equals {@code FQ_ABI_VERSION} of the bindings, or loading failed.
     *
     * @return the ABI version
     */
    public static int abiVersion() {
        NativeLibrary.load();
        return fq_abi_version();
    }

    /**
     * Whether the library was built with the CUDA backend.
     *
     * @return true when {@link Engine#cuda(int)} can work given a GPU
     */
    public static boolean hasCuda() {
        NativeLibrary.load();
        return fq_build_has_cuda() != 0;
    }

    /**
     * The number of usable CUDA devices.
     *
     * @return 0 when there is none or the library has no CUDA backend
     */
    public static int cudaDeviceCount() {
        try (Arena call = Arena.ofConfined()) {
            MemorySegment err = Native.error(call);
            MemorySegment out = call.allocate(C_INT);
            Native.check(fq_cuda_device_count(out, err), err);
            return out.get(C_INT, 0);
        }
    }

    /**
     * The name the native library gives a status code.
     *
     * @param status a {@code FQ_STATUS_*} value
     * @return for example {@code "FQ_STATUS_CANCELLED"}; {@code "FQ_STATUS_UNKNOWN"} for unknown values
     */
    public static String statusName(int status) {
        NativeLibrary.load();
        return Native.staticString(fq_status_name(status));
    }
}

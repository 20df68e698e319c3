package org.flatquant.benchmarks;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.FlatQuant;
import org.flatquant.FlatQuantException;
import org.flatquant.Model;

/**
 * What the model benchmarks share: the {@code device} and {@code model} parameters, the prompt text, and the check
 * that decides whether a GPU run is possible at all.
 *
 * <p>{@code model} is {@code stories260K} (the tiny model in {@code data/models/}), {@code smollm2}
 * (SmolLM2-135M-Instruct: {@code -Dflatquant.smollm2.gguf}, {@code $FQ_SMOLLM2_GGUF}, or the cache of
 * {@code ./flatquant}) or a path to a {@code .gguf} file. {@code device} is {@code cpu}, {@code cuda} or
 * {@code cuda:N}. The repository (for {@code data/}) is {@code -Dflatquant.repo.dir} or the nearest parent of the
 * working directory that holds {@code data/models}.
 */
final class Bench {
    private Bench() {
    }

    /** The JVM flags every fork gets: native access for the FFM calls. */
    static final String NATIVE_ACCESS = "--enable-native-access=ALL-UNNAMED";

    static Path repoDir() {
        String p = System.getProperty("flatquant.repo.dir", "");
        if (!p.isBlank()) {
            return Path.of(p).toAbsolutePath();
        }
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.isDirectory(dir.resolve("data/models"))) {
            dir = dir.getParent();
        }
        if (dir == null) {
            throw new IllegalStateException("cannot find the repository (data/models); run from inside it or pass "
                    + "-Dflatquant.repo.dir=...");
        }
        return dir;
    }

    static Path model(String name) {
        return switch (name) {
            case "stories260K" -> repoDir().resolve("data/models/stories260K.gguf");
            case "smollm2" -> {
                String cache = System.getenv().getOrDefault("FQ_CACHE",
                        System.getProperty("user.home") + "/.cache/flatquant");
                for (String c : List.of(System.getProperty("flatquant.smollm2.gguf", ""),
                        System.getenv().getOrDefault("FQ_SMOLLM2_GGUF", ""),
                        cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf")) {
                    if (!c.isBlank() && Files.isRegularFile(Path.of(c))) {
                        yield Path.of(c);
                    }
                }
                throw new IllegalStateException("SmolLM2 GGUF not found: pass -Dflatquant.smollm2.gguf=<file> or run "
                        + "./flatquant model-path once");
            }
            default -> Path.of(name);
        };
    }

    static Engine engine(String device) {
        if (device.equals("cpu")) {
            return Engine.cpu(Integer.getInteger("flatquant.bench.threads", 0));
        }
        return Engine.cuda(cudaOrdinal(device));
    }

    static boolean isCuda(String device) {
        return device.equals("cuda") || device.startsWith("cuda:");
    }

    static int cudaOrdinal(String device) {
        return device.equals("cuda") ? 0 : Integer.parseInt(device.substring("cuda:".length()));
    }

    /**
     * Why a GPU device cannot be benchmarked here, or null when it can: the library must have the CUDA backend, see
     * the device, and accept an engine on it.
     */
    static String whyNoGpu(String device) {
        try {
            if (!FlatQuant.hasCuda()) {
                return "the native library was built without the CUDA backend";
            }
            int n = FlatQuant.cudaDeviceCount();
            int ordinal = cudaOrdinal(device);
            if (ordinal >= n) {
                return n + " CUDA device(s) visible, " + device + " asked for";
            }
            Engine.cuda(ordinal).close();
            return null;
        } catch (FlatQuantException e) {
            return e.statusName() + ": " + e.detail();
        } catch (RuntimeException e) {
            return e.toString();
        }
    }

    /**
     * English prose for prompts and tokenizer input: the start of the WikiText-2 test set when the repository has
     * it, else a built-in paragraph repeated.
     */
    static String text() {
        try {
            Path wiki = repoDir().resolve("data/wikitext-2-raw/wiki.test.raw");
            if (Files.isRegularFile(wiki)) {
                byte[] b = Files.readAllBytes(wiki);
                return new String(b, 0, Math.min(b.length, 64 * 1024), StandardCharsets.UTF_8);
            }
        } catch (IOException | IllegalStateException e) {
            // Fall through to the built-in text.
        }
        String p = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
                + "One day, she saw a big red ball in the park and ran to kick it. ";
        return p.repeat(400);
    }

    /**
     * The first {@code n} tokens of {@link #text()}, with the model's BOS in front; repeated if the text is short.
     */
    static int[] prompt(Model model, int n) {
        int[] ids = model.tokenizer().encode(text(), Bos.DEFAULT);
        List<Integer> out = new ArrayList<>();
        while (out.size() < n) {
            for (int id : ids) {
                if (out.size() == n) {
                    break;
                }
                out.add(id);
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Fails unless every value is finite: a benchmark times only code whose output was checked. */
    static void checkFinite(float[] logits, String what) {
        for (float v : logits) {
            if (!Float.isFinite(v)) {
                throw new IllegalStateException(what + ": non-finite logit " + v);
            }
        }
    }

    /** The largest |a - b| over the last row of {@code all} ({@code [rows][vocab]}) against {@code row}. */
    static double maxDiffLastRow(float[] all, float[] row) {
        int off = all.length - row.length;
        double d = 0;
        for (int j = 0; j < row.length; j++) {
            d = Math.max(d, Math.abs((double) all[off + j] - row[j]));
        }
        return d;
    }

    static double maxAbs(float[] x) {
        double m = 0;
        for (float v : x) {
            m = Math.max(m, Math.abs(v));
        }
        return m;
    }
}

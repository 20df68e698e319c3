package org.flatquant.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import org.flatquant.CancellationToken;
import org.flatquant.CancelledException;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.ModelInfo;
import org.flatquant.cli.Args.UsageException;
import org.flatquant.cli.CalibrateCommand.CancelOnShutdown;

/**
 * {@code flatquant quantize}: makes the quantized model of a full-precision model ({@link Model#quantize}, from a
 * calibration artifact or with rtn/rotate) and writes it as a quantized-model file ({@link Model#saveQuantized}),
 * which {@code --quantized} then loads on its own. The summary (or one JSON object) goes to stdout, the progress bar
 * to stderr. Ctrl-C (or SIGTERM) cancels: exit status 130, the file is not written.
 */
final class QuantizeCommand {
    static final String USAGE = """
            usage: flatquant quantize --model M.gguf --artifact A [--quant Q] [--method M] --out Q.gguf
                   flatquant quantize --model M.gguf --method rtn|rotate [--quant Q] [--seed S] --out Q.gguf

            Makes the quantized model and writes it as a quantized-model file: a GGUF file with M's
            metadata, tokenizer, embeddings and output layer, and per layer the packed integer weights,
            their scales, the online transforms, the norms and the clipping values. Other commands load
            it with --quantized Q.gguf, without M.gguf or the artifact: on the CPU it computes what
            --model M.gguf with the same QUANT options computes; on a GPU it runs the W4A4 kernels.

              --model M           the full-precision GGUF model
              --artifact A        a calibration artifact of M (flatquant calibrate); --quant and --method
                                  default to the artifact's and must match it when given
              --quant Q           bit widths, e.g. w4a4kv4 (the default), w4a8kv8, w4a16; the weights must
                                  be quantized (2..8 bits)
              --method M          rtn (the default without --artifact), rotate, or flatquant (needs
                                  --artifact)
              --seed S            the rotations of --method rotate without --artifact (default 0)
              --out Q.gguf        the file to write (atomically; its directory must exist)
              --json              one JSON object on stdout instead of the summary
              --quiet             no progress bar
              --threads N         CPU worker threads (0 = one per core, the default)
              --device D          cpu (default), cuda or cuda:N

            exit status: 0 success, 1 error, 2 malformed command line, 130 cancelled""";

    private static final Set<String> FLAGS = Set.of("--json", "--quiet");

    private final PrintStream out;
    private final PrintStream err;

    QuantizeCommand(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    @SuppressWarnings("try") // the shutdown hook is registered by the resource itself
    void run(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Set<String> withValue = new HashSet<>(QuantFlags.options("--seed"));
        withValue.addAll(Set.of("--out", "--threads", "--device"));
        Args a = Args.parse("quantize", args, 1, withValue, FLAGS);
        if (a.has("--quantized")) {
            throw new UsageException("quantize makes a quantized-model file from --model M.gguf; --quantized "
                    + "names one that exists already");
        }
        QuantFlags quant = QuantFlags.parse(a, "--seed");
        if (!quant.quantizes()) {
            throw new UsageException("quantize needs --artifact A (a calibration artifact), or --method rtn|rotate "
                    + "(with --quant Q)");
        }
        Path target = Path.of(a.required("--out")).toAbsolutePath();
        Path modelPath = quant.existingPath();
        // Checked before the model loads and quantizes: the error names the option.
        if (Files.isDirectory(target)) {
            throw new Main.CliException("--out names a directory: " + target);
        }
        if (!Files.isDirectory(target.getParent())) {
            throw new Main.CliException("the directory of --out does not exist: " + target.getParent());
        }

        ProgressBar bar = a.has("--quiet") ? null : new ProgressBar(err);
        try (Engine engine = Main.engine(a);
             CancellationToken token = new CancellationToken();
             CancelOnShutdown hook = new CancelOnShutdown(token)) {
            long t0 = System.nanoTime();
            double quantizeSeconds;
            ModelInfo info;
            try (Model model = quant.load(engine, bar, token)) {
                quantizeSeconds = (System.nanoTime() - t0) / 1e9;
                info = model.info();
                model.saveQuantized(target, bar, token);
            } catch (CancelledException e) {
                if (bar != null) {
                    bar.finish();
                }
                err.println("error: quantization cancelled; " + target + " was not written");
                err.flush();
                throw new Main.ExitException(130);
            } finally {
                if (bar != null) {
                    bar.finish();
                }
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            long bytes = size(target);
            if (a.has("--json")) {
                // The engines are left out: they belong to a loaded model, and the file is not loaded here.
                out.println(new Json()
                        .put("model", modelPath.toString())
                        .put("out", target.toString())
                        .put("out_bytes", bytes)
                        .put("quant", info.quant())
                        .put("method", info.method())
                        .put("weight_quantizer", info.weightQuantizer())
                        .put("artifact", quant.artifact() == null ? null : quant.artifact().toString())
                        .put("quantize_seconds", quantizeSeconds)
                        .put("save_seconds", seconds - quantizeSeconds)
                        .put("seconds", seconds));
                return;
            }
            out.printf("quantized   %s (%,d bytes)%n", target, bytes);
            out.printf("scheme      %s%n", quant.describe(info));
            out.printf("model       %s%n", modelPath);
            out.printf("time        %.2f s (quantize %.2f s, save %.2f s)%n", seconds, quantizeSeconds,
                    seconds - quantizeSeconds);
            out.printf("run it      flatquant ppl --quantized %s --text wikitext2-test%n", target);
        }
    }

    private static long size(Path file) {
        try {
            return Files.size(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the size of " + file + ": " + e.getMessage(), e);
        }
    }
}

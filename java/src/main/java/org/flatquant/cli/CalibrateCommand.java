package org.flatquant.cli;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.flatquant.Bos;
import org.flatquant.CalibrationResult;
import org.flatquant.Calibrator;
import org.flatquant.CancellationToken;
import org.flatquant.CancelledException;
import org.flatquant.Engine;
import org.flatquant.InvalidArgumentException;
import org.flatquant.Model;
import org.flatquant.QuantMethod;
import org.flatquant.WeightQuantizer;
import org.flatquant.cli.Args.UsageException;

/**
 * {@code flatquant calibrate}: FlatQuant calibration of a GGUF model into a calibration artifact. The result goes to
 * stdout (a summary, or one JSON object with {@code --json}); progress goes to stderr. Ctrl-C (or SIGTERM) cancels
 * the calibration within one optimizer step; the artifact is then not written (an existing file stays as it was)
 * and no temporary file remains.
 */
final class CalibrateCommand {
    static final String USAGE = """
            usage: flatquant calibrate --model M.gguf --out A [--quant w4a4kv4] [--method flatquant]
                                       [--weights rtn] [--calib-text wikitext2-validation] [--samples 128]
                                       [--seqlen 2048] [--batch 4] [--epochs 15] [--lr 5e-3] [--seed 0] [--json]

            Calibrates the model's FlatQuant transforms, smoothing scales and clipping thresholds layer by
            layer and writes them to the calibration artifact A (safetensors), which ppl, eval, generate
            and info apply with --artifact A. Ctrl-C cancels; A is then not written.

              --out A             the artifact to write (atomically; its directory must exist)
              --quant Q           bit widths w<bits>a<bits>[kv<bits>], each 2..8 or 16 (off); default w4a4kv4
              --method M          flatquant (default: learned transforms), rotate (random rotations) or rtn
                                  (no transform); rotate and rtn learn nothing and need no text
              --weights W         rtn (default) or gptq (needs the text for every method)
              --calib-text T      a UTF-8 file, wikitext2-validation (default), wikitext2-test or c4 (the
                                  shipped C4 train sample); from the data dir (-Dflatquant.data.dir, ./data)
              --samples N         calibration windows (default 128), drawn at seeded random offsets
              --seqlen L          tokens per window (default 2048, at most the model's context)
              --batch B           windows per optimizer step (default 4, or N when smaller)
              --epochs E          epochs per layer (default 15)
              --lr X              learning rate of the transforms and smoothing scales (default 5e-3;
                                  the clipping thresholds get 10x)
              --seed S            window offsets, initialization and rotations (default 0)
              --diag-alpha X      smoothing-scale initialization exponent in [0, 1] (default 0.3)
              --no-smoothing      do not learn smoothing scales
              --no-lwc, --no-lac  do not learn the weight / activation and K/V clipping thresholds
              --direct-inverse    plain transform matrices with a computed inverse (default: SVD form)
              --percdamp X        GPTQ damping (default 0.01)
              --gptq-block-size B GPTQ column block (default 128)
              --base-artifact B   keep the transforms of the artifact B and only run GPTQ (--weights gptq)
                                  on B's own windows: --calib-text must be B's text; --samples, --seqlen
                                  and --seed are taken from B, --quant and --method default to B's
              --bos, --no-bos     a BOS token before the text, or none (default: the model's choice)
              --json              one JSON object on stdout instead of the summary
              --quiet             no progress on stderr
              --threads N         CPU worker threads (0 = one per core, the default)
              --device D          cpu (default), cuda or cuda:N (calibrates on that GPU)

            Progress: one line per layer with its final loss; during a layer, the optimizer step, the last
            epoch and its loss. Exit status: 0 success, 1 error, 2 malformed command line, 130 cancelled.""";

    private static final Set<String> WITH_VALUE = Set.of("--model", "--threads", "--device", "--out", "--quant",
            "--method", "--weights", "--calib-text", "--samples", "--seqlen", "--batch", "--epochs", "--lr", "--seed",
            "--diag-alpha", "--percdamp", "--gptq-block-size", "--base-artifact");
    private static final Set<String> FLAGS = Set.of("--json", "--quiet", "--no-smoothing", "--no-lwc", "--no-lac",
            "--direct-inverse", "--bos", "--no-bos");

    private final PrintStream out;
    private final PrintStream err;

    CalibrateCommand(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    @SuppressWarnings("try") // the shutdown hook is registered by the resource itself
    void run(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Args a = Args.parse("calibrate", args, 1, WITH_VALUE, FLAGS);
        if (a.has("--bos") && a.has("--no-bos")) {
            throw new UsageException("--bos and --no-bos exclude each other");
        }
        Calibrator calibrator = calibrator(a);
        Path modelPath = Path.of(a.required("--model"));
        Path artifact = Path.of(a.required("--out")).toAbsolutePath();
        if (!Files.exists(modelPath)) {
            throw new Main.CliException("model file not found: " + modelPath);
        }
        // Checked before the model loads and the calibration runs for hours.
        if (Files.isDirectory(artifact)) {
            throw new Main.CliException("--out names a directory: " + artifact);
        }
        if (!Files.isDirectory(artifact.getParent())) {
            throw new Main.CliException("the directory of --out does not exist: " + artifact.getParent());
        }
        if (calibrator.baseArtifact() != null && !Files.isRegularFile(calibrator.baseArtifact())) {
            throw new Main.CliException("--base-artifact not found: " + calibrator.baseArtifact());
        }
        String textArg = a.get("--calib-text", "wikitext2-validation");
        Texts.Text text = calibrator.needsText() ? Texts.forCalibration(textArg) : null;

        try (Engine engine = Main.engine(a);
             Model model = Model.load(engine, modelPath);
             CancellationToken token = new CancellationToken();
             CancelOnShutdown hook = new CancelOnShutdown(token)) {
            int ctx = model.info().contextLength();
            if (calibrator.needsText() && calibrator.baseArtifact() == null && calibrator.seqlen() > ctx) {
                throw new Main.CliException("--seqlen " + calibrator.seqlen() + " exceeds the model's context length "
                        + "of " + ctx + " tokens; pass --seqlen " + ctx + " or less");
            }
            CalibrationProgress progress = a.has("--quiet") ? null : new CalibrationProgress(err);
            CalibrationResult r;
            try {
                r = calibrator.toBuilder().cancellation(token).build()
                        .calibrate(model, text == null ? "" : text.content(), artifact, progress);
            } catch (CancelledException e) {
                if (progress != null) {
                    progress.finish();
                }
                err.println("error: calibration cancelled; " + artifact + " was not written");
                err.flush();
                throw new Main.ExitException(130);
            } finally {
                if (progress != null) {
                    progress.finish();
                }
            }
            String sha = model.fingerprint();
            boolean base = calibrator.baseArtifact() != null;
            if (a.has("--json")) {
                out.println(new Json()
                        .put("model", modelPath.toString())
                        .put("sha256", sha)
                        .put("artifact", r.artifact().toString())
                        .put("quant", r.quant().toString())
                        .put("method", r.method().id())
                        .put("weight_quantizer", r.weights().id())
                        .put("base_artifact", calibrator.baseArtifact() == null ? null
                                : calibrator.baseArtifact().toString())
                        .put("calib_text", text == null ? null : text.name())
                        .put("calib_text_sha256", text == null ? null : Main.sha256(text.content()))
                        .put("samples", base ? r.windows() : calibrator.samples())
                        .putInteger("seqlen", base ? null : (long) calibrator.seqlen())
                        .put("batch", calibrator.batch())
                        .put("epochs", calibrator.epochs())
                        .put("lr", calibrator.lr())
                        .putInteger("seed", base ? null : calibrator.seed())
                        .put("tokens", r.tokens())
                        .put("windows", r.windows())
                        .put("layers", r.layerCount())
                        .put("final_mse", r.finalMse())
                        .put("on_gpu", r.onGpu())
                        .put("seconds", r.seconds()));
                return;
            }
            out.printf("artifact    %s%n", r.artifact());
            out.printf("scheme      %s %s, %s weights%s%n", r.quant(), r.method().id(), r.weights().id(),
                    calibrator.baseArtifact() == null ? "" : " (transforms of " + calibrator.baseArtifact() + ")");
            out.printf("model       %s (sha256 %s)%n", modelPath, sha);
            if (text != null && base) {
                out.printf("text        %s: %,d tokens, the %d windows of %s%n", text.name(), r.tokens(),
                        r.windows(), calibrator.baseArtifact());
            } else if (text != null) {
                out.printf("text        %s: %,d tokens, %d windows of %d tokens, batch %d, %d epochs, lr %s, "
                        + "seed %d%n", text.name(), r.tokens(), r.windows(), calibrator.seqlen(), calibrator.batch(),
                        calibrator.epochs(), calibrator.lr(), calibrator.seed());
            } else {
                out.printf("text        none needed (seed %d)%n", calibrator.seed());
            }
            if (r.method() == QuantMethod.FLATQUANT && calibrator.baseArtifact() == null) {
                out.printf("loss        %.6e (mean over %d layers of the last epoch)%n", r.finalMse(),
                        r.layerCount());
            }
            out.printf("device      %s%n", r.onGpu() ? "gpu (" + engine + ")" : "cpu (" + engine + ")");
            out.printf("time        %.2f s%n", r.seconds());
        }
    }

    private static Calibrator calibrator(Args a) {
        try {
            Calibrator.Builder b = Calibrator.builder()
                    .weights(WeightQuantizer.parse(a.get("--weights", "rtn")))
                    .samples(a.intValue("--samples", Calibrator.DEFAULT_SAMPLES, 1, Integer.MAX_VALUE))
                    .seqlen(a.intValue("--seqlen", Calibrator.DEFAULT_SEQLEN, 2, Integer.MAX_VALUE))
                    .epochs(a.intValue("--epochs", Calibrator.DEFAULT_EPOCHS, 0, Integer.MAX_VALUE))
                    .lr(a.doubleValue("--lr", Calibrator.DEFAULT_LR))
                    .seed(a.longValue("--seed", 0, Long.MIN_VALUE, Long.MAX_VALUE))
                    .diagAlpha(a.doubleValue("--diag-alpha", Calibrator.DEFAULT_DIAG_ALPHA))
                    .smoothing(!a.has("--no-smoothing"))
                    .lwc(!a.has("--no-lwc"))
                    .lac(!a.has("--no-lac"))
                    .directInverse(a.has("--direct-inverse"))
                    .percdamp(a.doubleValue("--percdamp", Calibrator.DEFAULT_PERCDAMP))
                    .gptqBlockSize(a.intValue("--gptq-block-size", Calibrator.DEFAULT_GPTQ_BLOCK_SIZE, 1, 4096))
                    .bos(a.has("--bos") ? Bos.YES : a.has("--no-bos") ? Bos.NO : Bos.DEFAULT);
            if (a.has("--quant")) {
                b.quant(a.required("--quant"));
            }
            if (a.has("--method")) {
                b.method(QuantMethod.parse(a.required("--method")));
            }
            if (a.has("--base-artifact")) {
                b.baseArtifact(Path.of(a.required("--base-artifact")));
            }
            if (a.has("--batch")) {
                b.batch(a.intValue("--batch", Calibrator.DEFAULT_BATCH, 1, Integer.MAX_VALUE));
            }
            return b.build();
        } catch (InvalidArgumentException e) {
            throw new UsageException(e.detail());
        }
    }

    /**
     * Cancels the token when the JVM shuts down (Ctrl-C, SIGTERM) and holds the shutdown until the command is done,
     * so that the native call can remove its temporary file and return before the process exits. Closing it
     * unregisters the hook, or, during a shutdown, lets the shutdown go on.
     */
    static final class CancelOnShutdown implements AutoCloseable {
        /** How long a shutdown waits for the calibration to notice the cancellation and clean up. */
        private static final long WAIT_SECONDS = 60;

        private final CountDownLatch done = new CountDownLatch(1);
        private final Thread hook;

        CancelOnShutdown(CancellationToken token) {
            this.hook = new Thread(() -> {
                try {
                    token.cancel();
                } catch (IllegalStateException closed) {
                    return; // the command is past the calibration
                }
                try {
                    done.await(WAIT_SECONDS, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }, "flatquant-cancel-on-shutdown");
            Runtime.getRuntime().addShutdownHook(hook);
        }

        @Override
        public void close() {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running: release it below
            } finally {
                done.countDown();
            }
        }
    }
}

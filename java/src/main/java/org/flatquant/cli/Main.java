package org.flatquant.cli;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Set;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.FlatQuant;
import org.flatquant.FlatQuantException;
import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;
import org.flatquant.Model;
import org.flatquant.ModelInfo;
import org.flatquant.PerplexityOptions;
import org.flatquant.PerplexityResult;
import org.flatquant.Session;
import org.flatquant.cli.Args.UsageException;

/**
 * The {@code flatquant} command line: {@code info}, {@code ppl}, {@code generate}, {@code calibrate},
 * {@code quantize}, {@code eval}, {@code bench} and {@code serve} on the Java API. Exit status: 0 on success, 1 on an
 * error (message on stderr), 2 on a malformed command line (with the usage), 130 when a calibration or a
 * quantization was cancelled (Ctrl-C).
 */
public final class Main {
    static final String USAGE = """
            usage: flatquant <command> [options]

            commands (MODEL is --model M.gguf [QUANT], or --quantized Q.gguf):
              info      MODEL [--json]
                        the model's architecture, sizes, tokenizer, quantization and engines
              ppl       MODEL --text FILE|wikitext2-test|wikitext2-validation|c4
                        [--seqlen 2048] [--max-chunks N] [--bos|--no-bos] [--json] [--quiet]
                        perplexity over non-overlapping windows of --seqlen tokens (a plain FILE is read
                        as UTF-8 as is; wikitext2-* and c4 are rebuilt from the data directory, which is
                        -Dflatquant.data.dir or ./data; c4 is evaluated on its first 256 windows)
              generate  MODEL --prompt TEXT [--max-tokens 128]
                        [--temperature T] [--top-p P] [--top-k K] [--seed S]
                        streams the continuation of TEXT to stdout (greedy unless --temperature > 0)
              calibrate --model M.gguf --out A [--quant w4a4kv4] [--method flatquant|rotate|rtn]
                        [--weights rtn|gptq] [--calib-text wikitext2-validation] [--epochs 15]
                        [--samples 128] [--seqlen 2048] [--batch 4] [--lr 5e-3] [--seed 0] [--json]
                        FlatQuant calibration into the artifact A (calibrate --help)
              quantize  --model M.gguf QUANT --out Q.gguf [--json] [--quiet]
                        writes the quantized model as a quantized-model file, which --quantized
                        loads without M.gguf or the artifact (quantize --help)
              eval      MODEL --tasks piqa,arc_easy,... [--limit N] [--json]
                        zero-shot accuracy scored as lm-evaluation-harness does (eval --help)
              bench     MODEL [--prompt-tokens 512] [--gen-tokens 128] [--repeat 3] [--batch N] [--json]
                        session speed: prefill tokens/s and greedy decode ms/token (bench --help)
              serve     --model M.gguf | --quantized Q.gguf [--port 8080]
                        an OpenAI-compatible HTTP service (serve --help)

            QUANT: run a fake-quantized model instead of the full-precision one
              --quant Q           w<bits>a<bits>[kv<bits>], e.g. w4a4kv4 (the default), w4a16, w8a8;
                                  each width 2..8 or 16 (off)
              --method M          rtn (the default), rotate, or flatquant (needs --artifact)
              --artifact A        a calibration artifact of the model (from calibrate); --quant and
                                  --method then default to the artifact's
              --seed S            (ppl, eval, info, quantize, bench) the rotations of --method rotate
                                  without --artifact; generate calls it --quant-seed (its --seed is the
                                  sampler's)
            --quantized Q.gguf: a quantized-model file (from quantize), already quantized: it takes
              neither --model nor QUANT.
            --json output has "quant", "method", "weight_quantizer" and "artifact" (null for a
            full-precision model), "quantized_file", "eval_engine" and "session_engine".

            options of every command:
              --threads N         CPU worker threads (0 = one per core, the default)
              --device D          cpu (default), cuda or cuda:N; on a GPU, calibration, whole-sequence
                                  evaluation (ppl, eval) and sessions (generate, bench, serve) run there
              -h, --help          this text

            exit status: 0 success, 1 error, 2 malformed command line, 130 cancelled (calibrate,
            quantize)""";

    private static final Set<String> COMMON = Set.of("--threads", "--device");

    private final PrintStream out;
    private final PrintStream err;

    private Main(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    /**
     * Runs the command line and exits with its status.
     *
     * @param args the arguments
     */
    public static void main(String[] args) {
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        PrintStream err = new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8);
        int status = run(args, out, err);
        out.flush();
        err.flush();
        System.exit(status);
    }

    /**
     * Runs the command line without exiting, for tests and embedding.
     *
     * @param args the arguments
     * @param out where results go
     * @param err where errors and progress go
     * @return the exit status: 0 success, 1 error, 2 malformed command line
     */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        Main m = new Main(out, err);
        try {
            if (args.length == 0) {
                throw new UsageException("no command given");
            }
            switch (args[0]) {
                case "-h", "--help", "help" -> {
                    out.println(USAGE);
                    return 0;
                }
                case "--version" -> {
                    out.println("flatquant " + FlatQuant.version());
                    return 0;
                }
                case "info" -> m.info(args);
                case "ppl" -> m.ppl(args);
                case "generate" -> m.generate(args);
                case "calibrate" -> new CalibrateCommand(out, err).run(args);
                case "quantize" -> new QuantizeCommand(out, err).run(args);
                case "bench" -> new BenchCommand(out, err).run(args);
                case "eval" -> new EvalCommand(out, err).run(args);
                case "serve" -> { return ServeCommand.run(args, out, err); }
                default -> throw new UsageException("unknown command '" + args[0] + "'");
            }
            return 0;
        } catch (ExitException e) {
            return e.status; // the command has reported it
        } catch (UsageException e) {
            err.println("error: " + e.getMessage());
            err.println(USAGE);
            return 2;
        } catch (FlatQuantException e) {
            String cuda = e.cudaErrorName().isEmpty() ? "" : " (" + e.cudaErrorName() + ")";
            err.println("error: " + e.detail() + cuda);
            return 1;
        } catch (CliException | IllegalStateException | UncheckedIOException e) {
            err.println("error: " + e.getMessage());
            return 1;
        } finally {
            out.flush();
            err.flush();
        }
    }

    private static Set<String> with(Set<String> base, String... more) {
        return with(base, Set.of(more));
    }

    private static Set<String> with(Set<String> base, Set<String> more) {
        java.util.HashSet<String> s = new java.util.HashSet<>(base);
        s.addAll(more);
        return s;
    }

    /** The engine that --device and --threads ask for; shared by every command that loads a model. */
    static Engine engine(Args a) {
        int threads = a.intValue("--threads", 0, 0, 4096);
        String device = a.get("--device", "cpu");
        if (device.equals("cpu")) {
            return Engine.cpu(threads);
        }
        if (device.equals("cuda")) {
            return Engine.cuda(0);
        }
        if (device.startsWith("cuda:")) {
            try {
                return Engine.cuda(Integer.parseInt(device.substring(5)));
            } catch (NumberFormatException e) {
                throw new UsageException("--device cuda:N needs a device number, got '" + device + "'");
            }
        }
        throw new UsageException("--device must be cpu, cuda or cuda:N, got '" + device + "'");
    }

    // ---- info -------------------------------------------------------------------------------------------------

    private void info(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Args a = Args.parse("info", args, 1, with(COMMON, QuantFlags.options("--seed")), Set.of("--json"));
        QuantFlags quant = QuantFlags.parse(a, "--seed");
        Path path = quant.existingPath();
        try (Engine engine = engine(a); Model model = quant.load(engine, null)) {
            ModelInfo i = model.info();
            String sha = model.fingerprint();
            if (a.has("--json")) {
                out.println(quant.describe(new Json()
                        .put("model", path.toString())
                        .put("sha256", sha)
                        .put("architecture", i.architecture())
                        .put("name", i.name())
                        .put("tokenizer_model", i.tokenizerModel())
                        .put("tokenizer_pre", i.tokenizerPre())
                        .put("weight_types", i.weightTypes())
                        .put("n_params", i.parameterCount())
                        .put("file_bytes", i.fileBytes())
                        .put("n_vocab", i.vocabSize())
                        .put("n_ctx_train", i.contextLength())
                        .put("n_embd", i.embeddingLength())
                        .put("n_layer", i.layerCount())
                        .put("n_head", i.headCount())
                        .put("n_head_kv", i.kvHeadCount())
                        .put("head_dim", i.headDim())
                        .put("n_ff", i.feedForwardLength())
                        .put("rope_dim", i.ropeDim())
                        .put("rope_freq_base", i.ropeFreqBase())
                        .put("rms_eps", i.rmsEps())
                        .put("bos_id", i.bosId())
                        .put("eos_id", i.eosId())
                        .put("add_bos", i.addBos())
                        .put("tied_embeddings", i.tiedEmbeddings())
                        .put("has_qkv_bias", i.hasQkvBias())
                        .put("gguf_version", i.ggufVersion()), i));
                return;
            }
            out.printf("model           %s%n", path);
            out.printf("sha256          %s%n", sha);
            out.printf("architecture    %s%s%n", i.architecture(), i.name().isEmpty() ? "" : " (" + i.name() + ")");
            out.printf("parameters      %,d in %,d bytes, %s (GGUF v%d)%n", i.parameterCount(), i.fileBytes(),
                    i.weightTypes(), i.ggufVersion());
            out.printf("layers          %d, hidden %d, ffn %d%n", i.layerCount(), i.embeddingLength(),
                    i.feedForwardLength());
            out.printf("attention       %d heads, %d kv heads, head dim %d, rope dim %d, rope base %s%n",
                    i.headCount(), i.kvHeadCount(), i.headDim(), i.ropeDim(), i.ropeFreqBase());
            out.printf("context         %d tokens%n", i.contextLength());
            out.printf("tokenizer       %s (%s), %d tokens, bos %d, eos %d, add bos %s%n", i.tokenizerModel(),
                    i.tokenizerPre(), i.vocabSize(), i.bosId(), i.eosId(), i.addBos() ? "yes" : "no");
            if (i.isQuantized()) {
                out.printf("quantization    %s%n", quant.describe(i));
            }
            out.printf("engine          %s: %s%n", engine, QuantFlags.engines(i));
        }
    }

    // ---- ppl --------------------------------------------------------------------------------------------------

    private void ppl(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Args a = Args.parse("ppl", args, 1, with(with(COMMON, "--text", "--seqlen", "--max-chunks"),
                QuantFlags.options("--seed")), Set.of("--bos", "--no-bos", "--json", "--quiet"));
        if (a.has("--bos") && a.has("--no-bos")) {
            throw new UsageException("--bos and --no-bos exclude each other");
        }
        int seqlen = a.intValue("--seqlen", PerplexityOptions.DEFAULT_SEQLEN, 2, Integer.MAX_VALUE);
        long maxChunks = a.longValue("--max-chunks", -1, 1, Long.MAX_VALUE);
        Bos bos = a.has("--bos") ? Bos.YES : a.has("--no-bos") ? Bos.NO : Bos.DEFAULT;
        String textArg = a.required("--text");
        QuantFlags quant = QuantFlags.parse(a, "--seed");
        Path path = quant.existingPath();
        Texts.Text t = Texts.forEvaluation(textArg);
        String text = t.content();
        if (t.maxChunks() > 0) {
            // A benchmark's fixed window count (C4: 256) caps what --max-chunks asks for.
            maxChunks = maxChunks < 0 ? t.maxChunks() : Math.min(maxChunks, t.maxChunks());
        }

        ProgressBar bar = a.has("--quiet") ? null : new ProgressBar(err);
        try (Engine engine = engine(a); Model model = quant.load(engine, bar)) {
            int ctx = model.info().contextLength();
            if (seqlen > ctx) {
                throw new CliException("--seqlen " + seqlen + " exceeds the model's context length of " + ctx
                        + " tokens; pass --seqlen " + ctx + " or less");
            }
            PerplexityOptions options = new PerplexityOptions(seqlen, bos, maxChunks, null);
            PerplexityResult r;
            try {
                r = model.perplexity(text, options, bar);
            } finally {
                if (bar != null) {
                    bar.finish();
                }
            }
            String sha = sha256(text);
            if (a.has("--json")) {
                out.println(quant.describe(new Json()
                        .put("model", path.toString())
                        .put("text", textArg)
                        .put("text_file", t.file().toString())
                        .put("text_sha256", sha)
                        .put("seqlen", seqlen)
                        .put("chunks", r.chunks())
                        .put("tokens", r.tokens())
                        .put("predicted", r.predicted())
                        .put("bos", r.bos())
                        .put("nll", r.meanNll())
                        .put("nll_sum", r.nllSum())
                        .put("ppl", r.perplexity()), model.info())
                        .put("seconds", r.seconds()));
                return;
            }
            out.printf("model       %s%n", path);
            out.printf("quant       %s%n", quant.describe(model.info()));
            out.printf("engine      %s, %s%n", model.info().evalEngine(), engine);
            out.printf("text        %s (%,d characters, sha256 %s)%n", textArg, text.codePointCount(0, text.length()),
                    sha);
            if (!t.name().equals(t.file().toString())) {
                out.printf("text file   %s%n", t.file());
            }
            out.printf("tokens      %,d (BOS %s)%n", r.tokens(), r.bos() ? "yes" : "no");
            out.printf("windows     %d of %d tokens, %,d tokens predicted%n", r.chunks(), seqlen, r.predicted());
            out.printf("nll         %.6f nats/token%n", r.meanNll());
            out.printf("perplexity  %.4f%n", r.perplexity());
            out.printf("time        %.2f s%n", r.seconds());
        }
    }

    static String sha256(String text) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(d);
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError("every JDK has SHA-256", e);
        }
    }

    // ---- generate ---------------------------------------------------------------------------------------------

    private void generate(String[] args) {
        if (Args.wantsHelp(args)) {
            out.println(USAGE);
            return;
        }
        Args a = Args.parse("generate", args, 1,
                with(with(COMMON, "--prompt", "--max-tokens", "--temperature", "--top-p", "--top-k", "--seed"),
                        QuantFlags.options("--quant-seed")),
                Set.of());
        QuantFlags quant = QuantFlags.parse(a, "--quant-seed");
        String prompt = a.required("--prompt");
        int maxTokens = a.intValue("--max-tokens", 128, 1, Integer.MAX_VALUE);
        double temperature = a.doubleValue("--temperature", 0);
        double topP = a.doubleValue("--top-p", 1);
        int topK = a.intValue("--top-k", 0, 0, Integer.MAX_VALUE);
        long seed = a.longValue("--seed", 0, Long.MIN_VALUE, Long.MAX_VALUE);
        if (temperature < 0) {
            throw new UsageException("--temperature must be 0 (greedy) or positive, got " + temperature);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new UsageException("--top-p must be in (0, 1], got " + topP);
        }
        quant.existingPath();
        GenerationOptions options = GenerationOptions.sampled(maxTokens, (float) temperature, (float) topP, topK,
                seed);
        try (Engine engine = engine(a);
             Model model = quant.load(engine, null);
             Session session = model.newSession()) {
            int[] ids = model.tokenizer().encode(prompt, Bos.DEFAULT);
            long t0 = System.nanoTime();
            GenerationResult r = session.generate(ids, options, (token, piece) -> {
                out.print(piece);
                out.flush();
                return true;
            });
            double seconds = (System.nanoTime() - t0) / 1e9;
            out.println();
            err.printf("[%d tokens in %.2f s, %.1f tokens/s; stopped: %s]%n", r.tokens().length, seconds,
                    r.tokens().length / Math.max(seconds, 1e-9), r.stopReason().name().toLowerCase());
        }
    }

    /** Ends a command that has printed its own message, with the given exit status. */
    static final class ExitException extends RuntimeException {
        private static final long serialVersionUID = 1L;
        final int status;

        ExitException(int status) {
            super(null, null, false, false);
            this.status = status;
        }
    }

    /** An error the user can fix (a missing file, a value the model does not allow): exit status 1. */
    static final class CliException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CliException(String message) {
            super(message);
        }
    }
}

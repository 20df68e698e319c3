package hello;

import java.nio.file.Files;
import java.nio.file.Path;
import org.flatquant.CalibrationResult;
import org.flatquant.Calibrator;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.PerplexityOptions;
import org.flatquant.QuantMethod;
import org.flatquant.QuantScheme;
import org.flatquant.QuantizeOptions;
import org.flatquant.WikiText;

/**
 * Calibrates FlatQuant W4A4KV4 on WikiText-2 validation windows, saves the artifact, and compares the WikiText-2 test
 * perplexity of the full-precision model, plain round-to-nearest W4A4KV4 and FlatQuant W4A4KV4:
 * java -cp target/hello-flatquant.jar:target/lib/* hello.Quantize [MODEL.gguf] [DATA_DIR] [ARTIFACT] (default
 * target/model.w4a4kv4.fq; ppl, eval and generate of the command line take it with --artifact). The settings are small
 * (16 windows of 256 tokens, 3 epochs), so it finishes in seconds on stories260K; the paper uses 128 x 2048, 15 epochs.
 */
public final class Quantize {
    public static void main(String[] args) throws Exception {
        Path modelPath = Path.of(args.length > 0 ? args[0] : "../../data/models/stories260K.gguf");
        Path data = Path.of(args.length > 1 ? args[1] : "../../data");
        Path artifact = Path.of(args.length > 2 ? args[2] : "target/model.w4a4kv4.fq").toAbsolutePath();
        Files.createDirectories(artifact.getParent());
        PerplexityOptions eval = PerplexityOptions.defaults().withSeqlen(256).withMaxChunks(40);
        String test = WikiText.test(data);
        try (Engine engine = Engine.cpu();
             Model model = Model.load(engine, modelPath)) {
            CalibrationResult r = Calibrator.builder().samples(16).seqlen(256).epochs(3).build()
                    .calibrate(model, WikiText.validation(data), artifact, e -> {
                        if (e.epoch() == e.epochCount()) {
                            System.out.printf("layer %d/%d calibrated, loss %.3e%n", e.layer() + 1, e.layerCount(),
                                    e.mse());
                        }
                        return true; // false would cancel
                    });
            System.out.printf("artifact %s (%.1f s)%n", r.artifact(), r.seconds());
            System.out.printf("full precision      %8.3f%n", model.perplexity(test, eval).perplexity());
            try (Model rtn = model.quantize(QuantizeOptions.of(QuantScheme.W4A4KV4, QuantMethod.RTN));
                 Model flat = model.quantize(QuantizeOptions.artifact(r.artifact()))) {
                System.out.printf("W4A4KV4 rtn         %8.3f%n", rtn.perplexity(test, eval).perplexity());
                System.out.printf("W4A4KV4 flatquant   %8.3f%n", flat.perplexity(test, eval).perplexity());
            }
        }
    }
}

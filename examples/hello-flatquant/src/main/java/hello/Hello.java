package hello;

import java.nio.file.Path;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;
import org.flatquant.Model;
import org.flatquant.Session;

/** Loads a GGUF model and streams a greedy continuation of a prompt: java -jar hello.jar MODEL.gguf [PROMPT]. */
public final class Hello {
    public static void main(String[] args) {
        Path path = Path.of(args.length > 0 ? args[0] : "../../data/models/stories260K.gguf");
        String prompt = args.length > 1 ? args[1] : "Once upon a time";
        try (Engine engine = Engine.cpu();
             Model model = Model.load(engine, path);
             Session session = model.newSession()) {
            int[] ids = model.tokenizer().encode(prompt, Bos.DEFAULT);
            System.out.print(prompt);
            GenerationResult r = session.generate(ids, GenerationOptions.greedy(48), (token, text) -> {
                System.out.print(text);
                return true;
            });
            System.out.printf("%n[%d tokens, stopped: %s]%n", r.tokens().length, r.stopReason());
        }
    }
}

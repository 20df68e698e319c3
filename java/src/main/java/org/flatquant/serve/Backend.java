package org.flatquant.serve;

import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;
import org.flatquant.TokenListener;

/**
 * What {@link OpenAiServer} generates with: a tokenizer, a chat format, and a fixed number of sessions that each
 * generate one sequence at a time. {@link ModelBackend} is the real one; tests substitute others.
 *
 * <p>Thread contract: {@link #encode}, {@link #vocabSize()} and the other getters may be called from any thread
 * at any time. {@link #generate} with a given session index is called by one thread at a time (the server
 * keeps one worker thread per session), while different sessions run in parallel. {@link #close()} is called
 * once, after every {@code generate} call has returned.
 *
 * @since 0.1
 */
public interface Backend extends AutoCloseable {

    /**
     * The name clients pass as {@code "model"}.
     *
     * @return the model id, e.g. {@code "SmolLM2-135M-Instruct.Q4_1"}
     */
    String modelId();

    /**
     * How many sequences can be generated at once.
     *
     * @return the number of sessions, at least 1
     */
    int sessions();

    /**
     * The KV-cache length of every session: prompt plus generated tokens must fit.
     *
     * @return tokens per session
     */
    int contextLength();

    /**
     * The vocabulary size; token ids lie in {@code [0, vocabSize)}.
     *
     * @return the number of tokens
     */
    int vocabSize();

    /**
     * Tokenizes a prompt with the model's default BOS behaviour; special tokens written in the text (such as
     * {@code <|im_start|>}) become their ids.
     *
     * @param text the prompt
     * @return the token ids
     */
    int[] encode(String text);

    /**
     * How chat messages become a prompt for this model.
     *
     * @return the chat format
     */
    ChatFormat chatFormat();

    /**
     * Generates a continuation of {@code prompt} from an empty context on one session.
     *
     * @param session the session index, {@code 0 <= session < sessions()}
     * @param prompt the prompt's token ids, at least one, leaving room for {@code options.maxTokens()}
     * @param options sampling and limits; the server sets no cancellation token and cancels through the
     *     listener instead
     * @param listener receives every generated token on the calling thread; returning false stops generation
     * @return what was generated
     */
    GenerationResult generate(int session, int[] prompt, GenerationOptions options, TokenListener listener);

    /** Frees the sessions, the model and the engine. */
    @Override
    void close();
}

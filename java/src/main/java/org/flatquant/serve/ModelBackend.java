package org.flatquant.serve;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.GenerationOptions;
import org.flatquant.GenerationResult;
import org.flatquant.Model;
import org.flatquant.Session;
import org.flatquant.TokenListener;

/**
 * The real {@link Backend}: one {@link Model} shared by every request and a fixed set of {@link Session}s, one per
 * worker of the server. Each request resets a session and generates on it; sessions are never shared between
 * concurrent requests, which is the API's thread contract (a model is thread safe, a session serves one caller).
 *
 * @since 0.1
 */
public final class ModelBackend implements Backend {
    /** How the chat format is chosen. */
    public enum ChatMode {
        /** ChatML when the model's template is ChatML and its vocabulary has the markers, else plain. */
        AUTO,
        /** ChatML; fails when the vocabulary lacks the markers. */
        CHATML,
        /** {@code role: content} lines. */
        PLAIN;

        /**
         * Parses {@code auto}, {@code chatml} or {@code plain}.
         *
         * @param s the name, any case
         * @return the mode
         * @throws IllegalArgumentException for another name
         */
        public static ChatMode parse(String s) {
            return valueOf(s.toUpperCase(Locale.ROOT));
        }
    }

    private final Engine engine;
    private final Model model;
    private final List<Session> sessions;
    private final String modelId;
    private final ChatFormat chat;

    private ModelBackend(Engine engine, Model model, List<Session> sessions, String modelId, ChatFormat chat) {
        this.engine = engine;
        this.model = model;
        this.sessions = sessions;
        this.modelId = modelId;
        this.chat = chat;
    }

    /**
     * Loads a model and creates its sessions. On failure everything created so far is closed again.
     *
     * @param engine the engine; the backend takes ownership and closes it
     * @param path the GGUF file
     * @param sessions how many requests generate at once, at least 1
     * @param contextLength tokens per session; 0 for the session default (the model's context, at most 4096)
     * @param modelId the id clients use; null or blank for the file name without {@code .gguf}
     * @param chatMode how chat messages are formatted
     * @return the backend; close it
     */
    public static ModelBackend open(Engine engine, Path path, int sessions, int contextLength, String modelId,
                                    ChatMode chatMode) {
        Objects.requireNonNull(engine, "engine");
        Objects.requireNonNull(chatMode, "chatMode");
        if (sessions < 1) {
            throw new IllegalArgumentException("sessions must be at least 1, got " + sessions);
        }
        Model model = null;
        List<Session> created = new ArrayList<>();
        try {
            model = Model.load(engine, path);
            for (int i = 0; i < sessions; i++) {
                created.add(contextLength == 0 ? model.newSession() : model.newSession(contextLength));
            }
            ChatFormat chat = chatFormat(model, chatMode);
            String id = modelId == null || modelId.isBlank() ? defaultId(path) : modelId;
            return new ModelBackend(engine, model, List.copyOf(created), id, chat);
        } catch (RuntimeException e) {
            for (Session s : created) {
                s.close();
            }
            if (model != null) {
                model.close();
            }
            engine.close();
            throw e;
        }
    }

    private static String defaultId(Path path) {
        String name = path.getFileName().toString();
        return name.endsWith(".gguf") ? name.substring(0, name.length() - 5) : name;
    }

    private static ChatFormat chatFormat(Model model, ChatMode mode) {
        if (mode == ChatMode.PLAIN) {
            return ChatFormat.plain();
        }
        String template;
        try {
            Optional<String> t = GgufStrings.read(model.path(), "tokenizer.chat_template");
            template = t.orElse(null);
        } catch (IOException e) {
            // The native loader accepted the file; a template we cannot read only costs the chat format.
            template = null;
        }
        if (mode == ChatMode.AUTO) {
            return ChatFormat.detect(template, text -> singleToken(model, text));
        }
        ChatFormat f = ChatFormat.chatml(template, text -> singleToken(model, text));
        if (f == null) {
            throw new IllegalArgumentException("the model's vocabulary has no " + ChatFormat.IM_START + " and "
                    + ChatFormat.IM_END + " tokens; ChatML cannot be used with it");
        }
        return f;
    }

    private static int singleToken(Model model, String text) {
        int[] ids = model.tokenizer().encode(text, Bos.NO);
        return ids.length == 1 ? ids[0] : -1;
    }

    /**
     * The model all sessions share.
     *
     * @return the model
     */
    public Model model() {
        return model;
    }

    @Override
    public String modelId() {
        return modelId;
    }

    @Override
    public int sessions() {
        return sessions.size();
    }

    @Override
    public int contextLength() {
        return sessions.get(0).contextLength();
    }

    @Override
    public int vocabSize() {
        return model.info().vocabSize();
    }

    @Override
    public int[] encode(String text) {
        return model.tokenizer().encode(text, Bos.DEFAULT);
    }

    @Override
    public ChatFormat chatFormat() {
        return chat;
    }

    @Override
    public GenerationResult generate(int session, int[] prompt, GenerationOptions options, TokenListener listener) {
        Session s = sessions.get(session);
        s.reset();
        return s.generate(prompt, options, listener);
    }

    /**
     * Closes the sessions, then the model, then the engine.
     *
     * @throws IllegalStateException when a generation is still running (nothing further is closed then)
     */
    @Override
    public void close() {
        for (Session s : sessions) {
            s.close();
        }
        model.close();
        engine.close();
    }

    @Override
    public String toString() {
        return "ModelBackend[" + modelId + ", " + sessions.size() + " session(s) of " + contextLength()
                + " tokens, chat " + chat + ", " + engine + "]";
    }
}

package org.flatquant.benchmarks;

import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import org.flatquant.Bos;
import org.flatquant.Engine;
import org.flatquant.Model;
import org.flatquant.Tokenizer;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Tokenizer throughput through the Java API: {@link Tokenizer#encode} of a {@code bytes}-byte slice of English
 * prose (WikiText-2 test), and {@link Tokenizer#decode} of its ids. Besides calls per second, the auxiliary
 * counters report input bytes and tokens per second.
 *
 * <p>The tokenizer runs on the host whatever the engine, so there is no device parameter; the engine is a
 * one-thread CPU engine. Before timing, decoding the ids must give the text back (both tokenizers here are
 * lossless on this text).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {Bench.NATIVE_ACCESS})
public class TokenizerBenchmark {
    /** {@code stories260K} (SentencePiece-style), {@code smollm2} (byte-level BPE) or a path. */
    @Param({"stories260K"})
    public String model;

    /** Input length in UTF-8 bytes (cut at a character boundary). */
    @Param({"4096"})
    public int bytes;

    private Engine engine;
    private Model m;
    private Tokenizer tokenizer;
    private String text;
    private int textBytes;
    private int[] ids;

    /** Per-thread counters that JMH reports as rates next to the score. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Counters {
        /** Tokens produced (encode) or consumed (decode). */
        public long tokens;
        /** UTF-8 bytes consumed (encode) or produced (decode). */
        public long textBytes;

        @Setup(Level.Iteration)
        public void clear() {
            tokens = 0;
            textBytes = 0;
        }
    }

    @Setup(Level.Trial)
    public void setup() {
        engine = Engine.cpu(1);
        m = Model.load(engine, Bench.model(model));
        tokenizer = m.tokenizer();
        // From the first word: a leading space is not kept by SentencePiece-style decoding.
        String all = Bench.text().stripLeading();
        StringBuilder sb = new StringBuilder();
        int used = 0;
        for (int i = 0; i < all.length(); ) {
            int cp = all.codePointAt(i);
            String c = new String(Character.toChars(cp));
            used += c.getBytes(StandardCharsets.UTF_8).length;
            if (used > bytes) {
                break;
            }
            sb.append(c);
            i += Character.charCount(cp);
        }
        text = sb.toString();
        textBytes = text.getBytes(StandardCharsets.UTF_8).length;
        ids = tokenizer.encode(text, Bos.NO);
        if (ids.length == 0 || !tokenizer.decode(ids).equals(text)) {
            throw new IllegalStateException("the tokenizer does not round-trip the benchmark text");
        }
    }

    @Benchmark
    public int[] encode(Counters c) {
        int[] out = tokenizer.encode(text, Bos.NO);
        c.tokens += out.length;
        c.textBytes += textBytes;
        return out;
    }

    @Benchmark
    public String decode(Counters c) {
        String s = tokenizer.decode(ids);
        c.tokens += ids.length;
        c.textBytes += textBytes;
        return s;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        m.close();
        engine.close();
    }
}

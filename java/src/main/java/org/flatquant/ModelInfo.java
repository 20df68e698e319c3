package org.flatquant;

import java.lang.foreign.MemorySegment;
import org.flatquant.bindings.fq_model_info;

/**
 * What a model is: its architecture, sizes and tokenizer, as read from the model file.
 *
 * @param architecture the architecture name, {@code "llama"} or {@code "qwen2"}
 * @param name the model's name from its metadata, or empty
 * @param tokenizerModel {@code "llama"} (SentencePiece-style) or {@code "gpt2"} (byte-level BPE)
 * @param tokenizerPre the BPE pre-tokenizer, e.g. {@code "smollm"}, {@code "default"}
 * @param weightTypes the tensor types found in the file, e.g. {@code "Q4_1,Q8_0,F32"}
 * @param parameterCount parameters in the file's tensors
 * @param fileBytes the model file's size in bytes
 * @param vocabSize tokens in the vocabulary; every logits row has this many entries
 * @param contextLength the context length the model was trained with, in tokens
 * @param embeddingLength the hidden size
 * @param layerCount transformer blocks
 * @param headCount attention heads
 * @param kvHeadCount key/value heads (fewer than {@code headCount} with grouped-query attention)
 * @param headDim the size of one attention head
 * @param feedForwardLength the MLP's intermediate size
 * @param ropeDim the rotary embedding's dimension
 * @param bosId the beginning-of-sequence token, -1 when the model has none
 * @param eosId the end-of-sequence token, -1 when the model has none
 * @param addBos whether texts get a BOS token by default
 * @param tiedEmbeddings whether the output projection reuses the token embedding
 * @param hasQkvBias whether q/k/v projections have biases (Qwen2)
 * @param ropeFreqBase the rotary embedding's base frequency
 * @param rmsEps the epsilon of the RMS norms
 * @param ggufVersion the GGUF format version of the file
 * @param quant the bit widths of a quantized model ({@link Model#quantize}, or a quantized-model file), e.g.
 *     {@code "w4a4kv4"}; empty for a full-precision model
 * @param method the method of a quantized model, {@code "rtn"}, {@code "rotate"} or {@code "flatquant"}; empty for
 *     a full-precision model
 * @param weightQuantizer the weight quantizer of a quantized model, {@code "rtn"} or {@code "gptq"}; empty for a
 *     full-precision model
 * @param quantizedFile whether the model was loaded from a quantized-model file ({@link Model#saveQuantized})
 *     rather than quantized in memory or loaded in full precision
 * @param evalEngine what runs whole-sequence evaluation (logits, log-likelihood, perplexity) of this model:
 *     {@code "cpu"} (FP32 on the CPU, fake-quantized for a quantized model), {@code "cuda-fp32"} (a full-precision
 *     model on the GPU), {@code "cuda-fakequant"} (a quantized model on the GPU in FP32) or {@code "cuda-w4a4"} (a
 *     w4a4kv4 quantized-model file on the GPU: the real W4A4 kernels, INT4 weights and activations, 4-bit KV cache)
 * @param sessionEngine what runs this model's {@link Session}s: {@code "cpu"}, {@code "cuda-w4a4"} (a w4a4kv4
 *     quantized model on the GPU), {@code "cuda-fp16"} (a full-precision model on the GPU), or empty when no engine
 *     can (on a GPU: other quantized models, or models with q/k/v biases); creating a session then throws
 *     {@link UnsupportedInputException}
 * @since 0.1
 */
public record ModelInfo(
        String architecture,
        String name,
        String tokenizerModel,
        String tokenizerPre,
        String weightTypes,
        long parameterCount,
        long fileBytes,
        int vocabSize,
        int contextLength,
        int embeddingLength,
        int layerCount,
        int headCount,
        int kvHeadCount,
        int headDim,
        int feedForwardLength,
        int ropeDim,
        int bosId,
        int eosId,
        boolean addBos,
        boolean tiedEmbeddings,
        boolean hasQkvBias,
        float ropeFreqBase,
        float rmsEps,
        int ggufVersion,
        String quant,
        String method,
        String weightQuantizer,
        boolean quantizedFile,
        String evalEngine,
        String sessionEngine) {

    /**
     * Whether the model is a quantized one: made by {@link Model#quantize}, or loaded from a quantized-model file.
     *
     * @return true when {@link #quant()} is not empty
     */
    public boolean isQuantized() {
        return !quant.isEmpty();
    }

    /** Copies an fq_model_info struct filled by fq_model_get_info. */
    static ModelInfo of(MemorySegment s) {
        return new ModelInfo(
                Native.string(fq_model_info.architecture(s)),
                Native.string(fq_model_info.name(s)),
                Native.string(fq_model_info.tokenizer_model(s)),
                Native.string(fq_model_info.tokenizer_pre(s)),
                Native.string(fq_model_info.weight_types(s)),
                fq_model_info.n_params(s),
                fq_model_info.file_bytes(s),
                fq_model_info.n_vocab(s),
                fq_model_info.n_ctx_train(s),
                fq_model_info.n_embd(s),
                fq_model_info.n_layer(s),
                fq_model_info.n_head(s),
                fq_model_info.n_head_kv(s),
                fq_model_info.head_dim(s),
                fq_model_info.n_ff(s),
                fq_model_info.rope_dim(s),
                fq_model_info.bos_id(s),
                fq_model_info.eos_id(s),
                fq_model_info.add_bos(s) != 0,
                fq_model_info.tied_embeddings(s) != 0,
                fq_model_info.has_qkv_bias(s) != 0,
                fq_model_info.rope_freq_base(s),
                fq_model_info.rms_eps(s),
                fq_model_info.gguf_version(s),
                Native.string(fq_model_info.quant(s)),
                Native.string(fq_model_info.method(s)),
                Native.string(fq_model_info.weight_quantizer(s)),
                fq_model_info.quantized_file(s) != 0,
                Native.string(fq_model_info.eval_engine(s)),
                Native.string(fq_model_info.session_engine(s)));
    }
}

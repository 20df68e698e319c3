package org.flatquant;

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
 * @param quant the bit widths of a quantized model ({@link Model#quantize}), e.g. {@code "w4a4kv4"}; empty for a
 *     full-precision model
 * @param method the method of a quantized model, {@code "rtn"}, {@code "rotate"} or {@code "flatquant"}; empty for
 *     a full-precision model
 * @param weightQuantizer the weight quantizer of a quantized model, {@code "rtn"} or {@code "gptq"}; empty for a
 *     full-precision model
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
        String weightQuantizer) {

    /**
     * Whether the model is a fake-quantized one made by {@link Model#quantize}.
     *
     * @return true when {@link #quant()} is not empty
     */
    public boolean isQuantized() {
        return !quant.isEmpty();
    }
}

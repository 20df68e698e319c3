#!/usr/bin/env python3
"""Golden reference files for the native tests, produced with Hugging Face transformers from the GGUF files.

transformers reads the GGUF on its own (its own metadata reader, dequantizer and q/k un-permutation for the
rotate-half RoPE layout) and runs its PyTorch LLaMA, so these numbers come from an implementation that shares
no code with the native library. See README.md in this folder for the file formats.

Usage:
  python make_goldens.py --stories stories260K.gguf --smollm SmolLM2-135M-Instruct.Q4_1.gguf \
      --wikitext data/wikitext-2-raw/wiki.test.raw --out native/tests/golden
"""
import argparse
import contextlib
import copy
import hashlib
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np
import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.models.llama import modeling_llama

WIKITEXT_TEST_SHA256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"
PPL_SLICE_CHARS = 60000
PPL_MAX_CHUNKS_SHORT = 2
N_GENERATE = 20
SMOLLM_COLUMN_STRIDE = 97

# (output folder name, seqlen for the perplexity windows)
MODELS = {"stories": ("stories260K", 256), "smollm": ("smollm2-135m-instruct-q4_1", 512)}


# ---- inputs --------------------------------------------------------------------------------------------------------

# (1-based line of wiki.test.raw, max characters): each excerpt keeps the line's leading space and, when whole,
# its final "\n".
WIKI_EXCERPTS = [(2, None), (7, None), (10, None), (4, 400), (55, 300), (143, 300), (165, None), (193, 260),
                 (428, 240), (640, 300)]

TOKEN_TEXTS = [
    # Unicode
    ("accents", "Café naïve résumé façade crème brûlée, Ångström, São Paulo, Zürich, El Niño"),
    ("german", "Die Straße ist groß. Maßstab, Fußgänger, ÄÖÜ äöü, GROẞ"),
    ("greek", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Ελλάδα"),
    ("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва"),
    ("cjk", "中文分词测试：今天天气很好。漢字と汉字"),
    ("japanese_kana", "ひらがなとカタカナ、にほんごのぶんしょうです。トウキョウ"),
    ("korean", "안녕하세요, 세계! 한국어 텍스트입니다."),
    ("emoji", "I \u2764\ufe0f pizza \U0001F355 and \U0001F600\U0001F603\U0001F604! \U0001F44D\U0001F3FD"),
    ("emoji_zwj", "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \U0001F469\U0001F3FD\u200d\U0001F4BB "
                  "\U0001F3F3\ufe0f\u200d\U0001F308"),
    ("emoji_flags", "\U0001F1FA\U0001F1F8\U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5 \U0001F1E9\U0001F1EA"),
    ("arabic_hebrew", "مرحبا بالعالم — שלום עולם (RTL)"),
    ("combining_marks", "e\u0301 a\u0308 n\u0303 vs \u00e9 \u00e4 \u00f1; Z\u0351\u0323a\u0358l\u0310g\u0300o"),
    # whitespace
    ("two_spaces", "hello  world"),
    ("space_runs", "a     b       c"),
    ("tabs", "col1\tcol2\t\tcol3\t"),
    ("three_newlines", "line one\n\n\nline two"),
    ("leading_trailing_spaces", "   leading and trailing   "),
    ("lone_space", " "),
    ("lone_newline", "\n"),
    ("crlf", "first\r\nsecond\r\n"),
    ("mixed_whitespace", " \t \n  x \n\t"),
    # digits
    ("digits", "12345"),
    ("decimal", "3.14159"),
    ("thousands", "1,000,000"),
    ("date", "2024-11-22"),
    ("spaces_before_digits", "a  1 x = 10  20\n\n3"),
    ("unicode_digits", "\u00b2\u00b3 \u00bd \u0663\u0664 \u096a \uff11\uff12"),
    # code
    ("python", "def fib(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n"
               "    for _ in range(n):\n        a, b = b, a + b\n    return a\n"),
    ("c", "int main(void) {\n\tfor (int i = 0; i < 10; ++i) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n\treturn 0;\n}\n"),
    ("json", '{"name": "flatquant", "bits": [4, 4], "ok": true, "scale": 0.125, "nested": {"a": null}}'),
    # contractions
    ("contractions", "don't I'LL we've"),
    ("contractions_more", "She's here, they're not; I'd say you'll see it's Y'ALL'RE DON'T"),
    # special tokens written literally
    ("chatml_literal", "<|im_start|>user\nhi<|im_end|>"),
    ("endoftext_literal", "before<|endoftext|>after"),
    ("bos_literal", "<s>"),
    ("eos_literal", "</s>"),
    ("bos_eos_around_text", "<s>Once upon a time</s>"),
    ("unk_literal_inside", "a <unk> b"),
    # misc
    ("repeated_letters", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("tinystories", "Once upon a time, there was a little girl named Lily. She loved to play outside."),
    ("empty", ""),
]


def token_cases(wiki_lines, wiki_joined):
    cases = []
    for line_no, max_chars in WIKI_EXCERPTS:
        text = wiki_lines[line_no - 1] + "\n"
        if max_chars is not None:
            text = text[:max_chars]
        cases.append((f"wiki_line_{line_no}", text))
    cases.append(("wiki_joined_head", wiki_joined[:600]))
    return cases + TOKEN_TEXTS


# 3 sequences per model for the logits; the model's default BOS is put in front.
LOGIT_TEXTS = {
    "stories": ["Once upon a time, there was a little girl.",
                "The cat sat on the mat and looked at the big red ball.",
                "Tom and Sue went to the park. They played with a big dog."],
    "smollm": ["The quick brown fox jumps over the lazy dog.",
               "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
               " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor ."],
}

# Prompts whose 20 greedy steps all have a clear top-2 logit gap (>= 0.13), so float32 noise cannot flip them.
GENERATE_PROMPTS = {
    "stories": "Once upon a time",
    "smollm": "Once upon a time",
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hex_f32(values):
    """Little-endian float32 bytes as lowercase hex: 8 characters per value, exact."""
    return np.ascontiguousarray(np.asarray(values, dtype="<f4")).tobytes().hex()


def hex_f64(values):
    """Little-endian float64 bytes as lowercase hex: 16 characters per value, exact."""
    return np.ascontiguousarray(np.asarray(values, dtype="<f8")).tobytes().hex()


def to_json(obj, indent=""):
    """JSON with one object member or list item per line, except that lists of numbers and short strings stay on
    one line."""
    if isinstance(obj, dict):
        inner = indent + " "
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" if items else "{}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) or (isinstance(v, str) and len(v) > 80) for v in obj):
        inner = indent + " "
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(to_json(obj) + "\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", flush=True)


# ---- GGUF preparation ----------------------------------------------------------------------------------------------

def loadable_gguf(path, scratch):
    """Path of a GGUF that transformers can open: the original, or a copy without out-of-range special token ids.

    llama.cpp writes 0xFFFFFFFF (its "no token") for absent separator/padding ids, as stories260K.gguf does;
    transformers indexes the vocabulary with them and fails. The copy drops only those keys; its tensor data is
    checked to be byte-identical to the original.
    """
    reader = gguf.GGUFReader(path)
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    bad = [name for name, field in reader.fields.items()
           if name.startswith("tokenizer.ggml.") and name.endswith("_token_id") and int(field.contents()) >= n_vocab]
    if not bad:
        return path, []
    out = os.path.join(scratch, os.path.basename(path))
    cmd = [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--force"]
    for name in bad:
        cmd += ["--remove-metadata", name]
    subprocess.run(cmd + [path, out], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    copy_reader = gguf.GGUFReader(out)
    assert [t.name for t in copy_reader.tensors] == [t.name for t in reader.tensors]
    for a, b in zip(reader.tensors, copy_reader.tensors):
        assert a.tensor_type == b.tensor_type and bytes(a.data.tobytes()) == bytes(b.data.tobytes()), a.name
    return out, bad


def gguf_meta(path):
    reader = gguf.GGUFReader(path)
    f = reader.fields

    def get(key, default=None):
        return f[key].contents() if key in f else default

    return {
        "tokenizer_model": get("tokenizer.ggml.model"),
        "tokenizer_pre": get("tokenizer.ggml.pre", "default"),
        "n_vocab": len(f["tokenizer.ggml.tokens"].data),
        "bos_id": get("tokenizer.ggml.bos_token_id", -1),
        "eos_id": get("tokenizer.ggml.eos_token_id", -1),
    }, reader


def check_weights_against_gguf(model, reader):
    """Compares every HF weight with the gguf package's own dequantization of the same tensor.

    Two dequantizers written independently (transformers' torch one and gguf-py's numpy one) must agree; q/k are
    compared after applying llama.cpp's conversion permutation to HF's rotate-half layout. Returns the largest
    absolute difference seen (expected 0, or a few float32 ulps where one side fuses the multiply-add).
    """
    cfg = model.config
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    per_layer = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    params = dict(model.named_parameters())
    worst = 0.0
    for t in reader.tensors:
        parts = t.name.split(".")
        if parts[0] == "blk":
            hf = f"model.layers.{parts[1]}.{per_layer[parts[2]]}.weight"
        else:
            hf = names[parts[0]] + ".weight"
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        ref = ref.reshape([int(d) for d in reversed(t.shape.tolist())])  # (rows=out, cols=in), row-major
        got = params[hf].detach().cpu().numpy()
        if parts[0] == "blk" and parts[2] in ("attn_q", "attn_k"):
            n_head = cfg.num_attention_heads if parts[2] == "attn_q" else cfg.num_key_value_heads
            rows = got.shape[0]
            got = got.reshape(n_head, 2, rows // n_head // 2, -1).swapaxes(1, 2).reshape(got.shape)
        assert got.shape == ref.shape, (t.name, got.shape, ref.shape)
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))))
    return worst


# ---- models and tokenizers -----------------------------------------------------------------------------------------

def reference_pre_tokenizer(pre_name):
    """The pre-tokenizer that tokenizer.ggml.pre names, as the model's own tokenizer.json spells it.

    transformers' GGUF loader ignores tokenizer.ggml.pre and always uses plain GPT-2 ByteLevel splitting. SmolLM2's
    published tokenizer (and llama.cpp's "smollm" pre-tokenizer) first isolates every digit, then applies the
    GPT-2 regex; the two differ on whitespace runs before digits (e.g. "a  1") and on non-ASCII digits.
    """
    if pre_name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                                 use_regex=True)])
    # Any other named pre-tokenizer would need its own published definition here, or the goldens would be wrong.
    assert pre_name == "default", f"no reference pre-tokenizer for tokenizer.ggml.pre = {pre_name!r}"
    return None


def sentencepiece_processor(reader):
    """A SentencePiece BPE model built from the GGUF vocabulary (pieces, scores, types), for a cross-check.

    llama.cpp's SPM tokenizer follows SentencePiece: identity normalization, a "\u2581" dummy prefix always
    added, spaces escaped to "\u2581", byte fallback. Control tokens are never matched in the text.
    """
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    vocab = [reader.fields[f"tokenizer.ggml.{name}"].contents() for name in ("tokens", "scores", "token_type")]
    for piece, score, kind in zip(*vocab):
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kind  # GGUF token types use SentencePiece's numbers
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(proto.pieces)
    proto.trainer_spec.byte_fallback = True
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    return sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString())


def load(path, scratch):
    meta, reader = gguf_meta(path)
    loadable, dropped = loadable_gguf(path, scratch)
    d, f = os.path.split(loadable)
    tok_loader = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    pre = reference_pre_tokenizer(meta["tokenizer_pre"])
    if pre is not None:
        tok.backend_tokenizer.pre_tokenizer = pre
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    assert model.config.vocab_size == meta["n_vocab"]
    assert tok.bos_token_id == meta["bos_id"], (tok.bos_token_id, meta["bos_id"])
    meta["add_bos_default"] = bool(tok.add_bos_token)
    meta["dropped_keys"] = dropped
    meta["weights_max_abs_diff_vs_gguf_py"] = check_weights_against_gguf(model, reader)
    meta["spm"] = sentencepiece_processor(reader) if meta["tokenizer_model"] == "llama" else None
    print(f"{os.path.basename(path)}: weights vs gguf-py dequantization, max |diff| = "
          f"{meta['weights_max_abs_diff_vs_gguf_py']}", flush=True)
    return tok, tok_loader, model, meta


def _rms_norm_f64(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _eager_attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)
    attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def _rope_f64(config):
    base = float(config.rope_parameters["rope_theta"])
    dim = config.head_dim
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))

    def forward(x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    return forward


@contextlib.contextmanager
def float64_math(model64):
    """HF's LLaMA hard-codes float32 in RMSNorm, the attention softmax and the RoPE angles even for a float64 model;
    inside this context those three run in float64 too, so the float64 run is float64 end to end."""
    saved = (modeling_llama.LlamaRMSNorm.forward, modeling_llama.eager_attention_forward)
    modeling_llama.LlamaRMSNorm.forward = _rms_norm_f64
    modeling_llama.eager_attention_forward = _eager_attention_f64
    model64.model.rotary_emb.forward = _rope_f64(model64.config)
    try:
        yield
    finally:
        modeling_llama.LlamaRMSNorm.forward, modeling_llama.eager_attention_forward = saved
        del model64.model.rotary_emb.forward


@torch.no_grad()
def forward_logits(model, ids):
    return model(torch.tensor([ids], dtype=torch.long), use_cache=False).logits[0]  # [n_tokens, n_vocab]


def encode(tok, text, add_bos):
    ids = tok(text, add_special_tokens=False).input_ids
    return ([tok.bos_token_id] if add_bos else []) + ids


# ---- golden files --------------------------------------------------------------------------------------------------

def make_tokens(key, tok, tok_loader, meta, wiki_lines, wiki_joined):
    cases = []
    n_loader_diff = n_spm_diff = 0
    for name, text in token_cases(wiki_lines, wiki_joined):
        ids = tok(text, add_special_tokens=False).input_ids
        case = {"name": name, "text": text, "text_hex": text.encode("utf-8").hex(), "ids": ids,
                "decoded_hex": tok.decode(ids, skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False).encode("utf-8").hex()}
        loader_ids = tok_loader(text, add_special_tokens=False).input_ids
        if loader_ids != ids:
            case["ids_hf_gguf_loader"] = loader_ids
            n_loader_diff += 1
        if meta["spm"] is not None:
            spm_ids = meta["spm"].encode(text)
            if spm_ids != ids:
                case["ids_sentencepiece"] = spm_ids
                n_spm_diff += 1
        cases.append(case)
    print(f"{key}: {len(cases)} token cases, {n_loader_diff} differ with the plain GGUF loader, {n_spm_diff} with "
          f"SentencePiece", flush=True)
    return {
        "tokenizer_model": meta["tokenizer_model"], "tokenizer_pre": meta["tokenizer_pre"],
        "n_vocab": meta["n_vocab"], "bos_id": meta["bos_id"], "eos_id": meta["eos_id"],
        "add_bos_default": meta["add_bos_default"], "add_special_tokens": False, "cases": cases,
    }


def logit_block(logits, columns, hexer):
    full = logits.double()
    return {
        "logits_hex": [hexer(row[columns].numpy()) for row in logits],
        "argmax": [int(i) for i in torch.argmax(full, dim=-1)],
        "logsumexp": [float(v) for v in torch.logsumexp(full, dim=-1)],
    }


def make_logits(key, tok, model, model64, meta):
    n_vocab = meta["n_vocab"]
    if key == "smollm":
        columns = sorted(set(range(512)) | set(range(0, n_vocab, SMOLLM_COLUMN_STRIDE)))
    else:
        columns = list(range(n_vocab))
    seqs = []
    for text in LOGIT_TEXTS[key]:
        ids = encode(tok, text, meta["add_bos_default"])
        assert 8 <= len(ids) <= 24, (text, len(ids))
        l32 = forward_logits(model, ids)
        with float64_math(model64):
            l64 = forward_logits(model64, ids)
        diff = float((l32.double() - l64).abs().max())
        seqs.append({"text": text, "ids": ids, "n_positions": len(ids),
                     "f32": logit_block(l32, columns, hex_f32), "f64": logit_block(l64, columns, hex_f64),
                     "max_abs_diff_f32_vs_f64": diff, "max_abs_logit_f64": float(l64.abs().max())})
        print(f"{key}: logits len {len(ids)}, |f32 - f64| max {diff:.3e}", flush=True)
    return {"n_vocab": n_vocab, "column_ids": columns, "reference": "f64", "sequences": seqs}


@torch.no_grad()
def perplexity(model, ids, seqlen, max_chunks=None):
    n_chunks = len(ids) // seqlen
    if max_chunks is not None:
        n_chunks = min(n_chunks, max_chunks)
    window_nll = []
    for c in range(n_chunks):
        window = ids[c * seqlen:(c + 1) * seqlen]
        logp = torch.log_softmax(forward_logits(model, window).double(), dim=-1)  # [seqlen, n_vocab]
        targets = torch.tensor(window[1:], dtype=torch.long)
        window_nll.append(float(-logp[:-1].gather(1, targets[:, None]).sum()))
    n_pred = n_chunks * (seqlen - 1)
    nll_sum = math.fsum(window_nll)
    return {"n_chunks": n_chunks, "n_predicted": n_pred, "nll_sum": nll_sum, "ppl": math.exp(nll_sum / n_pred),
            "window_nll_sum": window_nll}


def make_ppl(key, tok, tok_loader, model, model64, meta, wiki_joined, seqlen):
    text = wiki_joined[:PPL_SLICE_CHARS]
    ids = encode(tok, text, meta["add_bos_default"])
    out = {
        "dataset": "wikitext-2-raw-v1 test", "joined_sha256": WIKITEXT_TEST_SHA256,
        "slice_chars": len(text), "slice_utf8_bytes": len(text.encode("utf-8")),
        "slice_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "add_bos": meta["add_bos_default"], "seqlen": seqlen, "n_tokens": len(ids),
        "token_ids_sha256": hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest(),
        "token_ids": ids,
    }
    out["hf_gguf_loader_agrees"] = encode(tok_loader, text, meta["add_bos_default"]) == ids
    if meta["spm"] is not None:
        out["sentencepiece_agrees"] = encode(tok, text, False) == meta["spm"].encode(text)
    out["f32"] = perplexity(model, ids, seqlen)
    out["f32_max_chunks_2"] = perplexity(model, ids, seqlen, PPL_MAX_CHUNKS_SHORT)
    with float64_math(model64):
        out["f64"] = perplexity(model64, ids, seqlen)
        out["f64_max_chunks_2"] = perplexity(model64, ids, seqlen, PPL_MAX_CHUNKS_SHORT)
    print(f"{key}: ppl f32 {out['f32']['ppl']:.6f} f64 {out['f64']['ppl']:.6f} over {out['f32']['n_chunks']} "
          f"windows of {seqlen} ({len(ids)} tokens); first 2: {out['f32_max_chunks_2']['ppl']:.6f}", flush=True)
    return out


@torch.no_grad()
def make_generate(key, tok, model, model64, meta):
    text = GENERATE_PROMPTS[key]
    prompt = encode(tok, text, meta["add_bos_default"])
    seq, margins = list(prompt), []
    with float64_math(model64):
        for _ in range(N_GENERATE):
            last = forward_logits(model64, seq)[-1]
            top2 = torch.topk(last, 2)
            margins.append(float(top2.values[0] - top2.values[1]))
            seq.append(int(top2.indices[0]))
    new_ids = seq[len(prompt):]
    # The float32 model with HF's own generate (KV cache) must agree with the float64 full-context loop.
    out32 = model.generate(torch.tensor([prompt]), max_new_tokens=N_GENERATE, min_new_tokens=N_GENERATE,
                           do_sample=False, pad_token_id=meta["eos_id"])
    new32 = [int(i) for i in out32[0, len(prompt):]]
    assert new32 == new_ids, (new32, new_ids)
    decoded = tok.decode(new_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    print(f"{key}: generated {decoded!r} (min top-2 margin {min(margins):.4f})", flush=True)
    return {"prompt_text": text, "prompt_ids": prompt, "n_new": N_GENERATE, "new_ids": new_ids,
            "new_text_hex": decoded.encode("utf-8").hex(), "new_text": decoded,
            "top2_margin_f64": margins, "stop_at_eos": False}


# ---- main ----------------------------------------------------------------------------------------------------------

def read_wikitext(path):
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    rows = [line if line.strip() else "" for line in raw.splitlines(keepends=True)]
    joined = "\n\n".join(rows)
    digest = hashlib.sha256(joined.encode("utf-8")).hexdigest()
    assert digest == WIKITEXT_TEST_SHA256, f"unexpected wiki.test.raw: joined sha256 {digest}"
    return raw.split("\n"), joined


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", required=True, help="stories260K.gguf")
    ap.add_argument("--smollm", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--wikitext", required=True, help="wikitext-2-raw/wiki.test.raw")
    ap.add_argument("--out", required=True, help="output folder (native/tests/golden)")
    ap.add_argument("--only", choices=sorted(MODELS), help="regenerate one model's files")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wiki_lines, wiki_joined = read_wikitext(args.wikitext)
    paths = {"stories": args.stories, "smollm": args.smollm}
    versions = {name: importlib.metadata.version(name)
                for name in ("transformers", "torch", "tokenizers", "gguf", "numpy", "sentencepiece")}
    with tempfile.TemporaryDirectory() as scratch:
        for key in ([args.only] if args.only else ["stories", "smollm"]):
            folder, seqlen = MODELS[key]
            out_dir = os.path.join(args.out, folder)
            os.makedirs(out_dir, exist_ok=True)
            tok, tok_loader, model, meta = load(paths[key], scratch)
            model64 = copy.deepcopy(model).double().eval()
            header = {"model_file": os.path.basename(paths[key]), "model_sha256": sha256_file(paths[key]),
                      "generator": "tools/goldens/make_goldens.py", "versions": versions}
            files = {
                "tokens.json": lambda: make_tokens(key, tok, tok_loader, meta, wiki_lines, wiki_joined),
                "logits.json": lambda: make_logits(key, tok, model, model64, meta),
                "ppl.json": lambda: make_ppl(key, tok, tok_loader, model, model64, meta, wiki_joined, seqlen),
                "generate.json": lambda: make_generate(key, tok, model, model64, meta),
            }
            for name, make in files.items():
                write_json(os.path.join(out_dir, name), {**header, **make()})
            del model, model64


if __name__ == "__main__":
    main()

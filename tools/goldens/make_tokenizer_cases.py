#!/usr/bin/env python3
"""Expected token ids and pre-token pieces for native/tests/test_tokenizer.cpp, from Hugging Face.

Prints C++ tables (IdCase / PreCase arrays and the WikiText id count and FNV-1a hash) to paste into the test.
Ids come from transformers' tokenizer built from the GGUF (AutoTokenizer.from_pretrained(dir, gguf_file=...)),
called with add_special_tokens=False. For SmolLM2 ("smollm") the pre-tokenizer is replaced by the model's published
one (Digits(individual) + ByteLevel), as tools/goldens/make_goldens.py does. The LLaMA-3, Qwen2 and GPT-2 cases use
SmolLM2's vocabulary with tokenizer.ggml.pre rewritten (a copy made with gguf's gguf_new_metadata), which
transformers maps to those regexes itself.

Usage: python make_tokenizer_cases.py --stories stories260K.gguf --smollm SmolLM2-135M-Instruct.Q4_1.gguf \
           --wikitext data/wikitext-2-raw/wiki.test.raw > cases.inc
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import gguf
import tokenizers
import transformers
from tokenizers import Regex, pre_tokenizers
from transformers import AutoTokenizer

COMMON = [
    ("heading", " = = Heading = = \n"),
    ("unicode", "Caf\u00e9 na\u00efve \u4e2d\u6587 \U0001F600\U0001F44D\U0001F3FD \u05e9\u05dc\u05d5\u05dd "
                "\u0645\u0631\u062d\u0628\u0627 e\u0301 Z\u0351\u0323a"),
    ("whitespace", "a  b   c\t\td\n\n\ne \r\n  "),
    ("digits", "12345 3.14159"),
    ("digits_spaces", "a  1 x = 10  20 \u00b2 \u00bd \u0663"),
    ("code", "def f(x):\n    return x**2  # square\n"),
    ("chatml", "<|im_start|>user\nhi<|im_end|>\n"),
    ("bos_eos_literal", "<s>Once upon a time</s> <unk>"),
    ("contractions", "I'LL don't we've \u017f's"),
    ("empty", ""),
]
VARIANT = [
    ("digits", "12345 3.14159 1234567"),
    ("contractions", "I'LL don't we've \u017f's"),
    ("whitespace", "a  b \n\n  c\t\t\nd  "),
    ("mixed", "(hello) \u00e9t\u00e9 2024-11-22 x\u00b2 \u4e2d\u6587!!\n"),
]
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PRE_TEXTS = ["Hello  world!!\n\n  x \r\n\r\n\t z\u2028", "I'LL don't 'S \u017f's 'll",
             "12345 3.14159 a  1\t\t2 \u00b2\u00bd\u0663", "(hi) \u00e9t\u00e9\u3000\u4e2d\u6587\u200b\u00a0\u00a0y",
             "x\u0301\u0308 \U0001F600!\n"]


def smollm_pre_tokenizer():
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                             use_regex=True)])


def rewrite(src, dst, *args):
    """A copy of a GGUF with some metadata changed, through gguf's own gguf_new_metadata script."""
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", *args, "--force", src, dst],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return dst


def loadable(path, scratch):
    """transformers cannot open a file whose special-token ids are out of range (llama.cpp's 0xFFFFFFFF = none)."""
    r = gguf.GGUFReader(path)
    n_vocab = len(r.fields["tokenizer.ggml.tokens"].data)
    bad = [k for k, f in r.fields.items()
           if k.startswith("tokenizer.ggml.") and k.endswith("_token_id") and int(f.contents()) >= n_vocab]
    if not bad:
        return path
    args = [a for k in bad for a in ("--remove-metadata", k)]
    return rewrite(path, os.path.join(scratch, os.path.basename(path)), *args)


def load(path):
    d, f = os.path.split(path)
    return AutoTokenizer.from_pretrained(d, gguf_file=f)


def lit(s):
    """C++ string literal of s's UTF-8 bytes."""
    out, prev_hex = '"', False
    for c in (s.encode("utf-8") if isinstance(s, str) else s):
        ch = chr(c)
        if ch in '"\\':
            piece = "\\" + ch
        elif ch in "\n\r\t":
            piece = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
        elif 0x20 <= c < 0x7F:  # a hex digit right after \xNN would extend the escape: start a new literal
            piece = ('" "' if prev_hex and ch in "0123456789abcdefABCDEF" else "") + ch
        else:
            piece = "\\x%02x" % c
        out += piece
        prev_hex = piece.startswith("\\x")
    return out + '"'


def wrap_lit(s, width=90):
    """s as adjacent literals of at most `width` source characters, never cutting a UTF-8 sequence."""
    chars, i, b = [], 0, s.encode("utf-8")
    while i < len(b):
        j = i + 1
        while j < len(b) and (b[j] & 0xC0) == 0x80:
            j += 1
        chars.append(b[i:j])
        i = j
    parts, cur = [], b""
    for ch in chars:
        if cur and len(lit(cur + ch)) > width:
            parts.append(lit(cur))
            cur = b""
        cur += ch
    return parts + [lit(cur)]


def wrap_items(items, first, cont, width=118):
    lines, line = [], first
    for k, item in enumerate(items):
        item += "," if k + 1 < len(items) else ""
        if len(line) > len(cont) and len(line) + 1 + len(item) > width:
            lines.append(line)
            line = cont
        line += ("" if line in (first, cont) else " ") + item
    return lines + [line]


def print_id_cases(name, tok, cases):
    print("const IdCase %s[] = {" % name)
    for cname, text in cases:
        ids = tok(text, add_special_tokens=False).input_ids
        round_trips = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == text
        parts = wrap_lit(text)
        print("    {%s, %s" % (lit(cname), parts[0] + ("," if len(parts) == 1 else "")))
        for k, p in enumerate(parts[1:]):
            print("     " + p + ("," if k == len(parts) - 2 else ""))
        lines = wrap_items([str(i) for i in ids], "     {", "      ")
        lines[-1] += "},"
        print("\n".join(lines))
        print("     %s}," % ("true" if round_trips else "false"))
    print("};")


def fnv1a(ids):
    h = 0xcbf29ce484222325
    for byte in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", required=True)
    ap.add_argument("--smollm", required=True)
    ap.add_argument("--wikitext", required=True)
    args = ap.parse_args()
    with open(args.wikitext, encoding="utf-8", newline="") as f:
        wiki = f.read()
    lines = wiki.split("\n")
    common = [("wiki_title", lines[1] + "\n"), ("wiki_paragraph", (lines[3] + "\n")[:150])] + COMMON

    print("// transformers %s, tokenizers %s" % (transformers.__version__, tokenizers.__version__))
    with tempfile.TemporaryDirectory() as scratch:
        stories = load(loadable(args.stories, scratch))
        smollm = load(loadable(args.smollm, scratch))
        smollm.backend_tokenizer.pre_tokenizer = smollm_pre_tokenizer()
        for name, tok in (("Stories", stories), ("Smol", smollm)):
            ids = tok(wiki, add_special_tokens=False).input_ids
            print("constexpr size_t kWiki%sCount = %d;" % (name, len(ids)))
            print("constexpr uint64_t kWiki%sFnv = 0x%016xull;" % (name, fnv1a(ids)))
        print_id_cases("kStoriesCases", stories, common)
        print_id_cases("kSmolCases", smollm, common)
        for name, pre, cases in (("kLlama3Cases", "llama-bpe", VARIANT), ("kQwen2Cases", "qwen2", VARIANT[:1]),
                                 ("kGpt2Cases", "default", VARIANT)):
            copy = rewrite(args.smollm, os.path.join(scratch, "smol_%s.gguf" % pre), "--pre-tokenizer", pre)
            print_id_cases(name, load(copy), cases)
            os.remove(copy)

    kinds = [("Gpt2", pre_tokenizers.Split(Regex(GPT2), behavior="isolated")),
             ("Llama3", pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated")),
             ("Qwen2", pre_tokenizers.Split(Regex(QWEN2), behavior="isolated")),
             ("Gpt2Digits", pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.Split(Regex(GPT2), behavior="isolated")]))]
    print("const PreCase kPreCases[] = {")
    for kind, ref in kinds:
        for text in (PRE_TEXTS[2:3] if kind == "Qwen2" else PRE_TEXTS):  # Qwen2 differs from LLaMA 3 in digits only
            parts = wrap_lit(text, 80)
            print("    {PreTokenizer::%s, %s" % (kind, parts[0] + ("," if len(parts) == 1 else "")))
            for k, p in enumerate(parts[1:]):
                print("     " + p + ("," if k == len(parts) - 2 else ""))
            lines = wrap_items([lit(p) for p, _ in ref.pre_tokenize_str(text)], "     {", "      ")
            lines[-1] += "}},"
            print("\n".join(lines))
    print("};")


if __name__ == "__main__":
    main()

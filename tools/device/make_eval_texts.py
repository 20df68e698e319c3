#!/usr/bin/env python3
"""Writes the evaluation and calibration texts as plain UTF-8 files, for machines without the Java CLI.

  wikitext2-test.txt        WikiText-2 test as Hugging Face datasets serves it: the rows of wiki.test.raw (every line
                            keeps its line break, a whitespace-only line becomes an empty row) joined with "\\n\\n",
                            as the official perplexity code does; sha256 696cca6b...ae83 (data/SOURCES.md)
  wikitext2-validation.txt  the same for wiki.valid.raw (the default calibration text); sha256 b44fb967...c29e
  c4.txt                    the C4 perplexity text: the documents of data/c4 joined with " " (the official code joins
                            the first 1100 documents of the validation shard; only 1000 train-shard documents are
                            available here, see data/SOURCES.md)

The same texts come out of `./flatquant ppl --text wikitext2-test|wikitext2-validation|c4`.

usage: make_eval_texts.py [--data data] --out DIR
"""
import argparse
import hashlib
import json
import os

EXPECTED = {
    "wikitext2-test.txt": "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83",
    "wikitext2-validation.txt": "b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e",
}


def hf_rows_joined(raw: str) -> str:
    rows = []
    for line in raw.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        rows.append("" if body.strip() == "" else body + "\n")
    return "\n\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    texts = {}
    for name, raw in (("wikitext2-test.txt", "wiki.test.raw"), ("wikitext2-validation.txt", "wiki.valid.raw")):
        with open(os.path.join(a.data, "wikitext-2-raw", raw), encoding="utf-8", newline="") as f:
            texts[name] = hf_rows_joined(f.read())
    docs = []
    c4_dir = os.path.join(a.data, "c4")
    for fn in sorted(os.listdir(c4_dir)):
        if fn.endswith(".jsonl"):
            with open(os.path.join(c4_dir, fn), encoding="utf-8") as f:
                docs += [json.loads(line)["text"] for line in f if line.strip()]
    texts["c4.txt"] = " ".join(docs)
    for name, text in texts.items():
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if name in EXPECTED and digest != EXPECTED[name]:
            raise SystemExit(f"{name}: sha256 {digest} differs from the documented {EXPECTED[name]}")
        with open(os.path.join(a.out, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"{name}: {len(text)} characters, sha256 {digest}")


if __name__ == "__main__":
    main()

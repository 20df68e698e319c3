#!/usr/bin/env python3
"""Golden zero-shot log-likelihoods from lm-evaluation-harness, on the items of data/tasks/.

lm-evaluation-harness (the `lm_eval` package) scores the first --limit items of piqa, arc_easy, arc_challenge,
hellaswag, winogrande and lambada_openai with its own task definitions (the YAML files and utils shipped in the
package: doc_to_text / doc_to_choice / process_docs, target delimiter, metrics) and its HFLM model wrapper around a
transformers model read from the GGUF file (float32). Only the datasets are replaced: each task's YAML is included
unchanged and its dataset is pointed at a local JSON-lines file holding our items, rewritten into the field layout
of the upstream Hugging Face dataset that the YAML expects. That rewriting is the only code here that decides what
the items are; the Java task loaders (org.flatquant.eval.TaskData) apply the same mapping, and the Java golden test
checks that both produce the same requests.

Mapping of our files to lm-eval documents (see data/tasks/README.md):
  piqa           valid.jsonl + valid-labels.lst            -> {goal, sol1, sol2, label}
  arc_*          {"query": "Question: Q", choices, gold}  -> {question: Q, choices: {text, label}, answerKey}
  hellaswag      llama.cpp text, 6 lines per item          -> {activity_label, ctx_a, ctx_b, endings, label}
                 (ctx_b is rebuilt: empty for WikiHow items, the trailing sentence fragment for ActivityNet ones)
  winogrande     {context_options, continuation, gold}     -> {sentence with "_", option1, option2, answer}
  lambada_openai {context, continuation}                   -> {text: context + " " + continuation}

Output (JSON): per task, per item, each request lm-eval built (context and continuation strings), the token ids
HFLM fed (its own _encode_pair), the summed log-likelihood and is_greedy it returned, the per-item metrics, and
the task's aggregate metrics with their standard errors.

Usage (Python 3.11; lm_eval 0.4.13 with the packages of requirements.txt):
  python tools/goldens/lm_eval_goldens.py --model SmolLM2-135M-Instruct.Q4_1.gguf \
      --data data/tasks --limit 20 --out java/src/test/resources/golden/lm_eval_smollm2.json
"""
import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

TASKS = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "lambada_openai"]

# The 19 wikiHow categories that HellaSwag uses as activity labels; every other label is an ActivityNet activity.
# WikiHow items have an empty ctx_b, ActivityNet items end their context with ctx_b, an incomplete noun phrase.
WIKIHOW_LABELS = {
    "Cars & Other Vehicles", "Computers and Electronics", "Education and Communications", "Family Life",
    "Finance and Business", "Food and Entertaining", "Health", "Holidays and Traditions", "Home and Garden",
    "Home,Categories", "Personal Care and Style", "Pets and Animals", "Philosophy and Religion", "Relationships",
    "Sports and Fitness", "Travel", "Uncategorized", "Work World", "Youth",
}
# The end of the last complete sentence before ctx_b: ., ! or ?, an optional closing quote, one space.
SENTENCE_END = re.compile(r"[.!?][\"']? ")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if len(out) == limit:
                    break
    return out


# ---- our files -> lm-eval documents ------------------------------------------------------------------------------

def piqa_docs(data, limit):
    items = read_jsonl(data / "piqa/valid.jsonl", limit)
    labels = (data / "piqa/valid-labels.lst").read_text(encoding="utf-8").split()
    return [{"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(labels[i])}
            for i, d in enumerate(items)]


def arc_docs(path, limit):
    docs = []
    for i, d in enumerate(read_jsonl(path, limit)):
        assert d["query"].startswith("Question: "), d["query"]
        letters = [chr(ord("A") + k) for k in range(len(d["choices"]))]
        docs.append({"id": f"item-{i}", "question": d["query"][len("Question: "):],
                     "choices": {"text": d["choices"], "label": letters}, "answerKey": letters[d["gold"]]})
    return docs


def hellaswag_split(line):
    """(activity_label, ctx_a, ctx_b) of a context line "label: ctx"."""
    label, body = line.split(": ", 1)
    if label in WIKIHOW_LABELS:
        return label, body, ""
    ends = [m.end() for m in SENTENCE_END.finditer(body)]
    k = ends[-1] if ends else 0
    # lm-eval joins ctx_a and ctx_b with one space; the space that ended the sentence is that one.
    return label, body[:k - 1] if k else "", body[k:]


def hellaswag_docs(data, limit):
    with open(data / "hellaswag/hellaswag_val_full.txt", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    docs = []
    for i in range(limit):
        ctx_line, gold, *endings = lines[6 * i:6 * i + 6]
        label, ctx_a, ctx_b = hellaswag_split(ctx_line)
        ctx = ctx_a + " " + ctx_b if ctx_b else ctx_a
        docs.append({"ind": i, "activity_label": label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": ctx,
                     "endings": endings, "label": gold})
    return docs


def winogrande_docs(data, limit):
    docs = []
    for d in read_jsonl(data / "winogrande/winogrande.llmfoundry.jsonl", limit):
        a, b = d["context_options"]
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        # The blank starts after the last space the two options share, so each option is a whole word or phrase.
        cut = a.rfind(" ", 0, n) + 1
        docs.append({"sentence": a[:cut] + "_ " + d["continuation"], "option1": a[cut:], "option2": b[cut:],
                     "answer": str(d["gold"] + 1)})
    return docs


def lambada_docs(data, limit):
    return [{"text": d["context"] + " " + d["continuation"]}
            for d in read_jsonl(data / "lambada_openai/lambada_openai.llmfoundry.jsonl", limit)]


def build_docs(task, data, limit):
    if task == "piqa":
        return piqa_docs(data, limit)
    if task in ("arc_easy", "arc_challenge"):
        return arc_docs(data / f"{task}/{task}.llmfoundry.jsonl", limit)
    if task == "hellaswag":
        return hellaswag_docs(data, limit)
    if task == "winogrande":
        return winogrande_docs(data, limit)
    return lambada_docs(data, limit)


def data_files(task, data):
    return {
        "piqa": ["piqa/valid.jsonl", "piqa/valid-labels.lst"],
        "arc_easy": ["arc_easy/arc_easy.llmfoundry.jsonl"],
        "arc_challenge": ["arc_challenge/arc_challenge.llmfoundry.jsonl"],
        "hellaswag": ["hellaswag/hellaswag_val_full.txt"],
        "winogrande": ["winogrande/winogrande.llmfoundry.jsonl"],
        "lambada_openai": ["lambada_openai/lambada_openai.llmfoundry.jsonl"],
    }[task]


# ---- lm-eval --------------------------------------------------------------------------------------------------------

UPSTREAM_YAML = {
    "piqa": "piqa/piqa.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
}


def write_task_configs(tmp, docs_by_task):
    import lm_eval.tasks
    tasks_dir = Path(lm_eval.tasks.__file__).parent
    names = {}
    for task, docs in docs_by_task.items():
        jsonl = tmp / f"{task}.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        name = f"fq_{task}"
        # JSON is valid YAML: the upstream task file is included unchanged, only the dataset is replaced.
        cfg = {
            "include": str(tasks_dir / UPSTREAM_YAML[task]),
            "task": name,
            "tag": [],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"eval": str(jsonl)}},
            "training_split": None,
            "validation_split": None,
            "test_split": "eval",
            "fewshot_split": None,
        }
        (tmp / f"{name}.yaml").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        names[task] = name
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the .gguf file")
    ap.add_argument("--data", default="data/tasks", help="the task data folder")
    ap.add_argument("--limit", type=int, default=20, help="items per task (the first ones)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    data = Path(args.data)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in TASKS:
            sys.exit(f"unknown task {t}")
    model_path = Path(args.model).resolve()
    tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(model_path.parent), gguf_file=model_path.name,
                                                 torch_dtype=torch.float32)
    model.eval()
    # batch_size 1: no padding, so every request is one unpadded forward pass, as the native library computes it.
    lm = HFLM(pretrained=model, tokenizer=tok, backend="causal", batch_size=1, device="cpu")

    docs_by_task = {t: build_docs(t, data, args.limit) for t in tasks}
    out = {
        "generator": "tools/goldens/lm_eval_goldens.py",
        "lm_eval_version": importlib.metadata.version("lm_eval"),
        "transformers_version": importlib.metadata.version("transformers"),
        "torch_version": importlib.metadata.version("torch"),
        "model_file": model_path.name,
        "model_sha256": sha256_file(model_path),
        "dtype": "float32",
        "limit": args.limit,
        "max_length": lm.max_length,
        "add_bos_token": lm.add_bos_token,
        "tasks": {},
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        names = write_task_configs(tmp, docs_by_task)
        tm = TaskManager(include_path=str(tmp))
        t0 = time.time()
        res = lm_eval.simple_evaluate(model=lm, tasks=[names[t] for t in tasks], num_fewshot=0,
                                      task_manager=tm, log_samples=True, bootstrap_iters=1000, random_seed=0)
        seconds = time.time() - t0
    for t in tasks:
        name = names[t]
        samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        items = []
        for s in samples:
            reqs = []
            for args_, resp in zip(s["arguments"], s["filtered_resps"], strict=True):
                ctx, cont = args_[0], args_[1]
                ctx_enc, cont_enc = lm._encode_pair(ctx, cont)
                ll, greedy = resp
                reqs.append({"context": ctx, "continuation": cont, "context_tokens": list(ctx_enc),
                             "continuation_tokens": list(cont_enc), "logprob": float(ll), "is_greedy": bool(greedy)})
            metrics = {k: float(s[k]) for k in ("acc", "acc_norm", "perplexity") if k in s}
            items.append({"doc_id": s["doc_id"], "requests": reqs, "metrics": metrics})
        agg = {k.split(",")[0]: v for k, v in res["results"][name].items()
               if "," in k and isinstance(v, (int, float))}
        out["tasks"][t] = {"files": {f: sha256_file(data / f) for f in data_files(t, data)},
                           "n": len(items), "metrics": agg, "items": items}
        print(f"{t:15s} n={len(items)} " + " ".join(f"{k}={v:.4f}" for k, v in agg.items()), file=sys.stderr)
    print(f"lm-eval took {seconds:.1f} s", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

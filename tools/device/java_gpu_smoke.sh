#!/usr/bin/env bash
# The Java CLI on the GPU machine end to end with a quantized-model file: quantize (from a calibration artifact),
# info, ppl (the real W4A4 engine), generate, bench (single and batch sessions, W4A4 and FP16 engines) and serve
# (the OpenAI-compatible service answering a completion, a streamed chat completion and four concurrent requests,
# then a graceful stop). Needs the library that tools/device/gpu_check.sh (or a plain CUDA build) made in
# FQ_GPU_BUILD, the jlink'ed runtime .device/jre.tgz and java/target/flatquant-*.jar (see java_eval.sh).
#
#   tools/device/java_gpu_smoke.sh MODEL.gguf ARTIFACT.safetensors
# Logs and JSON go to $OUT.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/java-gpu-out}"
BUILD="${FQ_GPU_BUILD:-/tmp/fq-gpu-build}"
model="$1"
artifact="$2"
mkdir -p "$OUT" /tmp/fq-jre
[ -x /tmp/fq-jre/jre/bin/java ] || tar xzf "$ROOT/.device/jre.tgz" -C /tmp/fq-jre
jar="$(ls "$ROOT"/java/target/flatquant-*.jar | grep -v -e sources -e javadoc | head -1)"
lib="$(find "$BUILD" -maxdepth 3 -name libflatquant.so | head -1)"
fq() {
    /tmp/fq-jre/jre/bin/java --enable-native-access=ALL-UNNAMED -Dflatquant.library.path="$lib" \
        -Dflatquant.data.dir="$ROOT/data" -jar "$jar" "$@"
}
q=/tmp/fq-smoke-w4a4kv4.gguf
status=0
step() {
    local name="$1"
    shift
    local start=$(date +%s%N)
    if "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; then
        printf '%-16s ok   %6d ms\n' "$name" "$(( ($(date +%s%N) - start) / 1000000 ))"
    else
        printf '%-16s FAIL (exit %s)\n' "$name" "$?"
        tail -5 "$OUT/$name.err"
        status=1
    fi
}
step quantize fq quantize --model "$model" --artifact "$artifact" --out "$q" --json
step info fq info --quantized "$q" --device cuda --json
step ppl fq ppl --quantized "$q" --device cuda --text wikitext2-test --json --quiet
step generate fq generate --quantized "$q" --device cuda --prompt "The capital of France is" --max-tokens 24
step bench-w4a4 fq bench --quantized "$q" --device cuda --prompt-tokens 512 --gen-tokens 64 --json
step bench-w4a4-b8 fq bench --quantized "$q" --device cuda --prompt-tokens 512 --gen-tokens 64 --batch 8 --json
step bench-fp16 fq bench --model "$model" --device cuda --prompt-tokens 512 --gen-tokens 64 --json
for f in info ppl generate bench-w4a4 bench-w4a4-b8 bench-fp16; do echo "== $f"; head -c 1500 "$OUT/$f.out"; echo; done

# The service: start, wait for health, four requests (one streamed, four concurrent), then SIGTERM.
fq serve --quantized "$q" --device cuda --port 8089 > "$OUT/serve.out" 2> "$OUT/serve.err" &
server=$!
python3 - <<'PY' > "$OUT/serve_client.txt" 2>&1 || status=1
import json, threading, time, urllib.request
base = "http://127.0.0.1:8089"
for _ in range(120):
    try:
        urllib.request.urlopen(base + "/health", timeout=2).read(); break
    except Exception:
        time.sleep(0.5)
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read().decode()
print("models:", urllib.request.urlopen(base + "/v1/models").read().decode()[:300])
t = time.time()
print("completion:", post("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 16})[1][:400], f"{time.time()-t:.2f}s")
t = time.time()
st, body = post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Name three colors."}], "max_tokens": 24, "stream": True})
print("stream:", st, len([l for l in body.splitlines() if l.startswith("data:")]), "events", body.splitlines()[-1] if body else "", f"{time.time()-t:.2f}s")
res = []
def one(i):
    res.append(post("/v1/completions", {"prompt": f"Story {i}: once upon a time", "max_tokens": 32})[0])
ths = [threading.Thread(target=one, args=(i,)) for i in range(4)]
t = time.time()
[th.start() for th in ths]; [th.join() for th in ths]
print("concurrent statuses:", res, f"{time.time()-t:.2f}s")
try:
    post("/v1/completions", {"prompt": "x", "max_tokens": -3})
except urllib.error.HTTPError as e:
    print("bad request:", e.code, e.read().decode()[:200])
PY
kill -TERM $server
wait $server
echo "serve exit: $?"
cat "$OUT/serve_client.txt"
tail -3 "$OUT/serve.err"
exit $status

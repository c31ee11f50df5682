#!/usr/bin/env bash
# Quick start: builds sluice, starts the bundled mock model server and sluice on 127.0.0.1:8080,
# and prints a fresh demo virtual key with a curl line that streams a reply. Ctrl-C stops both.
# Real providers join in when OPENAI_API_KEY / ANTHROPIC_API_KEY are set.
set -euo pipefail
cd "$(dirname "$0")"
.ci/deps.sh
cargo build --release -p sluice-proxy -p sluice-bench
bin=target/release
dir=target/quickstart
mkdir -p "$dir"

# A new demo key each run; only its digest goes into the generated config.
keytext=$("$bin/sluice-proxy" keys new --org demo --models 'mock-*,gpt-*,claude-*,text-embedding-*')
key=$(grep -o 'sk-sluice-[A-Za-z0-9]*' <<<"$keytext")
{ cat conf/sluice.toml; echo; sed -n '/^\[\[keys\]\]/,$p' <<<"$keytext"; } >"$dir/sluice.toml"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
"$bin/sluice-mock" --listen 127.0.0.1:9100 >"$dir/mock.log" 2>&1 &
pids+=($!)
: >"$dir/proxy.log"
"$bin/sluice-proxy" --config "$dir/sluice.toml" 2>>"$dir/proxy.log" &
pids+=($!)
# sluice prints "listening on" once its sockets listen (or exits with the reason).
if ! timeout 30 grep -q -m1 'listening on' <(tail -n +1 -f "$dir/proxy.log"); then
  cat "$dir/proxy.log" >&2
  echo "sluice did not start; see above" >&2
  exit 1
fi

cat <<MSG

sluice is running on http://127.0.0.1:8080 (mock models: mock-gpt, mock-claude)
Demo virtual key (org "demo"; shown once, only its digest is stored):

    $key

Stream a reply:

curl -N http://127.0.0.1:8080/v1/chat/completions \\
  -H "Authorization: Bearer $key" -H 'content-type: application/json' \\
  -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello there"}]}'

SDKs: OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=$key  (Anthropic: base_url=http://127.0.0.1:8080)
Usage records: $dir/usage.jsonl   Logs: $dir/proxy.log   Stop: Ctrl-C
MSG
wait

#!/usr/bin/env bash
# Quick start: builds sluice, starts the bundled mock model server, the usage ledger
# (sluice-control, SQLite) on 127.0.0.1:9300 and sluice on 127.0.0.1:8080, and prints a fresh demo
# virtual key with a curl line that streams a reply and one that asks the ledger for the usage.
# Ctrl-C stops all three (the proxy first, so it drains its usage records to the ledger).
# Real providers join in when OPENAI_API_KEY / ANTHROPIC_API_KEY are set.
set -euo pipefail
cd "$(dirname "$0")"
.ci/deps.sh
cargo build --release -p sluice-proxy -p sluice-bench -p sluice-control
bin=target/release
dir=target/quickstart
mkdir -p "$dir" "$dir/ledger"

# Fresh ledger tokens each run. They live in this script's environment and in a 0600 file for the
# admin token (read by the usage curl below), never on the screen.
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
SLUICE_INGEST_TOKEN=$(token)
SLUICE_ADMIN_TOKEN=$(token)
export SLUICE_INGEST_TOKEN SLUICE_ADMIN_TOKEN
(umask 077 && printf '%s\n' "$SLUICE_ADMIN_TOKEN" >"$dir/ledger/admin-token")

# A new demo key each run; only its digest goes into the generated config.
keytext=$("$bin/sluice-proxy" keys new --org demo --models 'mock-*,gpt-*,claude-*,text-embedding-*')
key=$(grep -o 'sk-sluice-[A-Za-z0-9]*' <<<"$keytext")
{
  cat conf/sluice.toml
  echo
  sed -n '/^\[\[keys\]\]/,$p' <<<"$keytext"
  cat <<TOML

[ledger]
url = "http://127.0.0.1:9300"
token = "env:SLUICE_INGEST_TOKEN"
spool_dir = "$dir/spool"
batch_records = 500
batch_interval = "200ms"
spend_poll = "5s"
TOML
} >"$dir/sluice.toml"

mock_pid='' ledger_pid='' proxy_pid=''
stop() {
  trap - EXIT INT TERM
  # The proxy first: on SIGTERM it drains its usage records to the ledger before exiting.
  if [ -n "$proxy_pid" ]; then kill -TERM "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
  kill $ledger_pid $mock_pid 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

# Waits until a log file shows "listening on" (or fails with the log).
await() {
  if ! timeout 60 grep -q -m1 'listening on' <(tail -n +1 -f "$1"); then
    cat "$1" >&2
    echo "$2 did not start; see above" >&2
    exit 1
  fi
}

"$bin/sluice-mock" --listen 127.0.0.1:9100 >"$dir/mock.log" 2>&1 &
mock_pid=$!
: >"$dir/ledger.log"
"$bin/sluice-control" --listen 127.0.0.1:9300 --data-dir "$dir/ledger" 2>>"$dir/ledger.log" &
ledger_pid=$!
await "$dir/ledger.log" "the ledger (sluice-control)"
: >"$dir/proxy.log"
"$bin/sluice-proxy" --config "$dir/sluice.toml" 2>>"$dir/proxy.log" &
proxy_pid=$!
# sluice prints "listening on" once its sockets listen (or exits with the reason).
await "$dir/proxy.log" "sluice"

cat <<MSG

sluice is running on http://127.0.0.1:8080 (mock models: mock-gpt, mock-claude)
Demo virtual key (org "demo"; shown once, only its digest is stored):

    $key

Stream a reply:

curl -N http://127.0.0.1:8080/v1/chat/completions \\
  -H "Authorization: Bearer $key" -H 'content-type: application/json' \\
  -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello there"}]}'

Then ask the ledger (sluice-control on 127.0.0.1:9300) what org "demo" used, by model:

curl -s "http://127.0.0.1:9300/v1/usage?org=demo&group_by=model" \\
  -H "Authorization: Bearer \$(cat $dir/ledger/admin-token)"

SDKs: OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=$key  (Anthropic: base_url=http://127.0.0.1:8080)
Usage records: $dir/usage.jsonl and the ledger ($dir/ledger/ledger.db)   Logs: $dir/*.log   Stop: Ctrl-C
MSG
wait "$proxy_pid"

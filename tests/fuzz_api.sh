#!/usr/bin/env bash
# Fuzzes the HTTP API from its OpenAPI description with schemathesis.
#
# Starts the real `leadgate serve` on 127.0.0.1 with the small SmolLM2 model and a
# temporary database, waits for /readyz, runs schemathesis on /openapi.json for a bounded
# number of test cases, and stops the server with SIGTERM. It fails when schemathesis
# reports a failed check, such as a 5xx, an undocumented status, a body that does not match
# the schema or an invalid request that was accepted. It also fails when the server does
# not stop cleanly or its log shows a panic.
#
# Usage: tests/fuzz_api.sh [SCHEMATHESIS RUN OPTIONS...]
#
# Environment:
#   LEADGATE_BIN            the leadgate binary (default: target/release/leadgate under
#                           $CARGO_TARGET_DIR, else under the repository)
#   SCHEMATHESIS            the schemathesis command (default: schemathesis on PATH)
#   LEADGATE_FUZZ_EXAMPLES  test cases per operation in the fuzzing phase (default: 40)
#   LEADGATE_FUZZ_SEED      schemathesis's random seed (default: 1, so that a CI failure
#                           repeats; set another value to generate other test cases)
#   LEADGATE_FUZZ_KEY       an API key, sent as `Authorization: Bearer KEY`; by default
#                           a bot key made on the temporary database
#   LEADGATE_MODELS_DIR     the folder with the fetched models (default: models/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

bin=${LEADGATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/leadgate}
schemathesis=${SCHEMATHESIS:-schemathesis}
examples=${LEADGATE_FUZZ_EXAMPLES:-40}
models_dir=${LEADGATE_MODELS_DIR:-$root/models}
startup_seconds=180
stop_seconds=300

if [ ! -x "$bin" ]; then
  echo "fuzz_api: $bin is missing; run \`cargo build --release\` or set LEADGATE_BIN" >&2
  exit 1
fi
if ! schemathesis=$(command -v "$schemathesis"); then
  echo "fuzz_api: ${SCHEMATHESIS:-schemathesis} not found; install schemathesis or set SCHEMATHESIS" >&2
  exit 1
fi
case "$schemathesis" in
  /*) ;;
  *) schemathesis="$PWD/$schemathesis" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/leadgate-fuzz-api.XXXXXX")
log="$work/server.log"
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2> /dev/null; then
    kill -KILL "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "fuzz_api: $1; the server log ends with:" >&2
  tail -n 40 "$log" >&2
  exit 1
}

# A throwaway database key, and a bot key made on the new database unless one is given.
export LEADGATE_DB_KEY="${LEADGATE_DB_KEY:-fuzz-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
if [ -z "${LEADGATE_FUZZ_KEY:-}" ]; then
  LEADGATE_FUZZ_KEY=$(env -u LEADGATE_CONFIG "$bin" keys create --role bot --name fuzz \
    --db "$work/leads.db" 2> "$log" | tail -n 1) || fail "leadgate keys create failed"
fi

# The server runs in the temporary folder so that no leadgate.toml of the caller applies.
# With a short wait most leads get 202 at once while the model works in the background,
# and 32 tokens (the minimum) keep each qualification short.
(
  cd "$work"
  exec env -u LEADGATE_CONFIG LEADGATE_MODELS_DIR="$models_dir" HF_HUB_OFFLINE=1 \
    LEADGATE_LOG=info "$bin" serve --listen 127.0.0.1:0 --db "$work/leads.db" \
    --model smollm2-135m-instruct --threads 1 --max-tokens 32 --wait-ms 500
) > /dev/null 2> "$log" &
server_pid=$!

base=
for _ in $(seq "$startup_seconds"); do
  base=$(sed -n 's/^leadgate listening on //p' "$log" | head -n 1)
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2> /dev/null || fail "the server exited during start-up"
  sleep 1
done
[ -n "$base" ] || fail "the server did not listen within $startup_seconds s"
ready=
for _ in $(seq 30); do
  if curl -fsS -o /dev/null "$base/readyz"; then
    ready=1
    break
  fi
  sleep 1
done
[ -n "$ready" ] || fail "$base/readyz did not return 200 within 30 s"
echo "fuzz_api: server ready at $base; running schemathesis, $examples cases per operation" >&2

auth=()
if [ -n "${LEADGATE_FUZZ_KEY:-}" ]; then
  auth=(--header "Authorization: Bearer $LEADGATE_FUZZ_KEY")
fi
# positive_data_acceptance is left out: a value can match the schema and still be refused
# with 422 by design, such as a phone number that is not a real number.
# schemathesis runs in the temporary folder too, because it keeps a cache in the current one.
status=0
(cd "$work" && "$schemathesis" run "$base/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$examples" \
  --workers 2 \
  --seed "${LEADGATE_FUZZ_SEED:-1}" \
  --request-timeout 60 \
  --no-color \
  "${auth[@]}" "$@") || status=$?

echo "fuzz_api: stopping the server; it finishes the accepted leads first" >&2
kill -TERM "$server_pid"
for _ in $(seq "$stop_seconds"); do
  kill -0 "$server_pid" 2> /dev/null || break
  sleep 1
done
if kill -0 "$server_pid" 2> /dev/null; then
  fail "the server did not stop within $stop_seconds s of SIGTERM"
fi
server_exit=0
wait "$server_pid" || server_exit=$?
server_pid=
[ "$server_exit" -eq 0 ] || fail "the server exited with status $server_exit"
if grep -q "panicked" "$log"; then
  fail "the server log shows a panic"
fi
echo "fuzz_api: the server qualified $(grep -c 'lead qualified' "$log" || true) leads" >&2
if [ "$status" -ne 0 ]; then
  echo "fuzz_api: schemathesis reported failures (exit status $status)" >&2
  exit "$status"
fi
echo "fuzz_api: no failures" >&2

#!/usr/bin/env bash
# Runs the OpenID Foundation's conformance plans against clef through the suite's own
# scripts/run-test-plan.py (its HTTP API). Needs what these build machines lack: a running suite
# (Docker, or the hosted one) and a public https issuer the suite can reach. See README.md.
#
#   CLEF_ISSUER=https://clef.example.org \
#   SUITE_URL=https://localhost.emobix.co.uk:8443/ \
#   SUITE_DIR=~/conformance-suite \
#   conformance/run-plans.sh [basic config form-post rp-logout backchannel-logout dynamic]
#
# CLEF_ISSUER   the public https URL of this clef (a reverse proxy or tunnel to CLEF_LISTEN)
# CLEF_LISTEN   where clef listens (default 127.0.0.1:8080); the proxy forwards there
# SUITE_URL     the suite's base URL, ending in / (the suite's own variable is CONFORMANCE_SERVER)
# SUITE_DIR     a checkout of the suite (scripts/run-test-plan.py, scripts/conformance.py)
# CONFORMANCE_TOKEN  an API token, for the hosted suite (www.certification.openid.net)
# CLEF_BIN      the clef binary (default: target/release/clef, built when missing)
# ALIAS         the suite alias for static clients (default clef); redirect URIs depend on it
# RENDER_ONLY=1 start clef, create the clients and render the configurations, but run nothing
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

: "${CLEF_ISSUER:?set CLEF_ISSUER to the public https URL the suite reaches clef at}"
: "${SUITE_URL:?set SUITE_URL to the suite, e.g. https://localhost.emobix.co.uk:8443/}"
: "${SUITE_DIR:?set SUITE_DIR to a checkout of the conformance suite}"
case "$CLEF_ISSUER" in https://*) ;; *) echo "CLEF_ISSUER must be https (the suite checks every endpoint)" >&2; exit 2 ;; esac
case "$SUITE_URL" in */) ;; *) SUITE_URL="$SUITE_URL/" ;; esac
export CLEF_ISSUER CONFORMANCE_SERVER="$SUITE_URL"
ALIAS="${ALIAS:-clef}"
CLEF_BIN="${CLEF_BIN:-$root/target/release/clef}"
if [ ! -x "$CLEF_BIN" ]; then (cd "$root" && cargo build --release --locked --bin clef); fi

plans=("$@")
[ ${#plans[@]} -gt 0 ] || plans=(config basic form-post rp-logout backchannel-logout dynamic)

# The plan name with its variants, as run-test-plan.py takes it, per configuration file.
plan_name() {
    case "$1" in
        config) echo "oidcc-config-certification-test-plan" ;;
        basic) echo "oidcc-basic-certification-test-plan[server_metadata=discovery][client_registration=static_client]" ;;
        form-post) echo "oidcc-formpost-basic-certification-test-plan[server_metadata=discovery][client_registration=static_client]" ;;
        rp-logout) echo "oidcc-rp-initiated-logout-certification-test-plan[response_type=code][client_registration=static_client]" ;;
        backchannel-logout) echo "oidcc-backchannel-rp-initiated-logout-certification-test-plan[response_type=code][client_registration=static_client]" ;;
        dynamic) echo "oidcc-dynamic-certification-test-plan[response_type=code]" ;;
        *) echo "unknown plan $1" >&2; exit 2 ;;
    esac
}

work="$(mktemp -d -t clef-plans.XXXXXX)"
server_pid=""
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    echo "logs and rendered configurations: $work"
}
trap cleanup EXIT

# The settings every plan needs: a fresh database, keys and outbox; the suite's own test user;
# registration open for the Dynamic OP plan (RFC 7591; `off` otherwise).
export CLEF_LISTEN="${CLEF_LISTEN:-127.0.0.1:8080}"
export CLEF_DATABASE_URL="sqlite://$work/clef.db"
export CLEF_KEYS_DIR="$work/keys"
export CLEF_OUTBOX_DIR="$work/outbox"
export CLEF_TRUSTED_PROXIES="${CLEF_TRUSTED_PROXIES:-127.0.0.1}"
export CLEF_REGISTRATION="${CLEF_REGISTRATION:-open}"
export CLEF_SIGNUP=closed
export USER_EMAIL="${USER_EMAIL:-conformance@example.org}"
export USER_PASSWORD="${USER_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}"
cd "$work"
"$CLEF_BIN" migrate
echo "$USER_PASSWORD" | "$CLEF_BIN" users create --email "$USER_EMAIL" --password-stdin --name "Conformance User" \
    --verified --phone +15555550100 --address "1 Conformance Way, Portland, OR 97201" >/dev/null

# The suite's URLs for static clients (https://openid.net/certification/connect_op_testing/):
# callback, post_logout_redirect and backchannel_logout under /test/a/ALIAS/.
base="${SUITE_URL}test/a/$ALIAS"
client() { # name, extra flags…  → prints "id secret"
    local name="$1"; shift
    "$CLEF_BIN" clients create --name "$name" --redirect-uri "$base/callback" "$@" --json |
        python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["client_id"], c["client_secret"])'
}
read -r CLIENT_ID CLIENT_SECRET < <(client "conformance client 1" --post-logout-redirect-uri "$base/post_logout_redirect")
read -r CLIENT2_ID CLIENT2_SECRET < <(client "conformance client 2" --post-logout-redirect-uri "$base/post_logout_redirect")
read -r POST_CLIENT_ID POST_CLIENT_SECRET < <(client "conformance client_secret_post")
[ -n "$CLIENT_ID" ] && [ -n "$CLIENT2_ID" ] && [ -n "$POST_CLIENT_ID" ] || { echo "clients create failed" >&2; exit 1; }
export ALIAS CLIENT_ID CLIENT_SECRET CLIENT2_ID CLIENT2_SECRET POST_CLIENT_ID POST_CLIENT_SECRET
"$CLEF_BIN" serve >"$work/clef.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$CLEF_LISTEN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$CLEF_LISTEN/.well-known/openid-configuration" -o "$work/discovery.json" ||
    { cat "$work/clef.log" >&2; echo "clef did not start" >&2; exit 1; }
if [ -z "${RENDER_ONLY:-}" ]; then
    curl -fsS "$CLEF_ISSUER/.well-known/openid-configuration" >/dev/null ||
        { echo "clef is not reachable at $CLEF_ISSUER (check the proxy)" >&2; exit 1; }
fi

# A plan whose feature this clef does not advertise would fail at its first module: leave it out
# and say so (the offline runner skips the same checks with the same reason).
advertised() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2]); sys.exit(0 if v is True or (isinstance(v, str) and v) else 1)' "$work/discovery.json" "$1"; }
kept=()
for p in "${plans[@]}"; do
    case "$p" in
        backchannel-logout) advertised backchannel_logout_supported || { echo "== leaving out $p: not advertised: backchannel_logout_supported"; continue; } ;;
        dynamic) advertised registration_endpoint || { echo "== leaving out $p: not advertised: registration_endpoint (set CLEF_REGISTRATION)"; continue; } ;;
    esac
    kept+=("$p")
done
plans=("${kept[@]}")
[ ${#plans[@]} -gt 0 ] || { echo "no plan left to run" >&2; exit 1; }
if [[ " ${plans[*]} " == *" backchannel-logout "* ]]; then
    # Back-Channel Logout 1.0 §2.2: the suite listens at …/backchannel_logout.
    read -r BCL_ID BCL_SECRET < <(client "conformance back-channel" \
        --post-logout-redirect-uri "$base/post_logout_redirect" --backchannel-logout-uri "$base/backchannel_logout")
    [ -n "$BCL_ID" ] || { echo "clients create --backchannel-logout-uri failed" >&2; exit 1; }
fi

args=()
for p in "${plans[@]}"; do
    name="$(plan_name "$p")"
    out="$work/$p.json"
    if [ "$p" = backchannel-logout ]; then
        CLIENT_ID="$BCL_ID" CLIENT_SECRET="$BCL_SECRET" python3 "$here/render.py" "$here/plans/$p.json" >"$out"
    else
        python3 "$here/render.py" "$here/plans/$p.json" >"$out"
    fi
    args+=("$name" "$out")
done

# run-test-plan.py fails a run when an expected skip or failure is never used, so keep only the
# entries of the plans being run (matched as the script matches them: fnmatch on the file name).
for f in expected-skips expected-failures; do
    python3 - "$here/$f.json" "$work"/*.json >"$work/$f.list" <<'PY'
import fnmatch, json, sys
entries, configs = json.load(open(sys.argv[1])), sys.argv[2:]
json.dump([e for e in entries if any(fnmatch.fnmatch(c, e["configuration-filename"]) for c in configs)], sys.stdout, indent=2)
PY
done

if [ -n "${RENDER_ONLY:-}" ]; then
    echo "== RENDER_ONLY: would run, in $SUITE_DIR:"
    echo "python3 scripts/run-test-plan.py --expected-skips-file $work/expected-skips.list --expected-failures-file $work/expected-failures.list ${args[*]}"
    exit 0
fi
cd "$SUITE_DIR"
python3 scripts/run-test-plan.py \
    --expected-skips-file "$work/expected-skips.list" \
    --expected-failures-file "$work/expected-failures.list" \
    "${args[@]}"

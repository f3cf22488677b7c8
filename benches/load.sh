#!/usr/bin/env bash
# The load benchmark: authgate next to the peers users would pick instead, in ONE run, on
# ../shared/bench (wrk; CPU µs per request of the proxy process tree from /proc; one worker;
# upstream and wrk outside the measured process). Absolute times on shared machines are
# noise: the ratios within one run are the result.
#
#   bash benches/load.sh                   # as root, from the project root; ~17 min
#   PASSES="1 2" bash benches/load.sh      # also the two-worker pass
#   TLS=0 bash benches/load.sh             # plain HTTP only (~4-5 min)
#
# After the plain-HTTP targets, benches/tls_load.py measures nginx, HAProxy jwt_verify and
# authgate behind TLS (P-256 and RSA-2048 certificates): HTTP/1.1, HTTP/2, full and resumed
# handshakes, TLS_ROUNDS rounds (default 2) of TLS_DURATION seconds (default 10) each.
#
# Targets (in this order): upstream alone, nginx plain proxy, HAProxy plain, HAProxy
# jwt_verify (RS256, ES256), authgate on an `auth = "none"` route, authgate RS256/ES256/EdDSA
# with the verified-token cache off, and with it on, and authgate with DPoP (below). The
# harness's peers have no Ed25519 key: benches/add_eddsa.py adds one (kid "bench-ed") to its
# JWKS and mints TOKEN_EDDSA with the RS256 token's claims; only authgate is measured with it.
#
# DPoP (RFC 9449), target authgate-dpop: the `authgate` variant (token cache on) with
# `dpop = "required"` on its provider, measured as real DPoP clients call it: every request
# carries `Authorization: DPoP <token>` and a proof made for it alone (its own `jti`, `iat`
# of the second it was signed). benches/add_dpop.py makes the client's P-256 key and mints
# TOKEN_DPOP: the ES256 token's claims plus `cnf.jkt` (the key's RFC 7638 thumbprint), signed
# with the harness's ES256 key. wrk cannot sign in Lua, so just before the measurement
# benches/dpop_proofs.py signs DPOP_RATE x (WARMUP + DURATION) x (1 + RETRIES) proofs for
# `GET http://127.0.0.1:PORT/` into a file in /dev/shm (no disk writeback during the run),
# and benches/dpop.lua gives each request the next unused one: each proof is sent once across
# the warm-up, the measurement and a re-measurement. DPOP_RATE (default 30000 req/s) must be
# above the rate reached, about twice what a proof check per request should leave one worker;
# if the proofs run out, wrk stops instead of reusing one and the report marks the row. At
# the default a pass sends at most 720,000 proofs, within the gateway's default replay store
# (`server.dpop_replay_max_entries`, 1,000,000; a full one answers 503, counted as non-2xx),
# and signs them in seconds, well inside the proofs' `iat` window (60 s + 30 s leeway). Its
# checks: a fresh proof is accepted; the same proof again (replay), the bound token as Bearer,
# no proof, a proof for another URL and the unbound ES256 token are refused.
#   TARGETS="nginx haproxy-jwt authgate-nocache authgate authgate-dpop" bash benches/load.sh
#
# AUTHGATE_BASE_BIN=path/to/an/older/authgate adds two targets for an A/B in the same run:
# authgate-base-none and authgate-base (that binary's `auth = "none"` route and cache-on
# JWT variants); name them in TARGETS, e.g.
#   AUTHGATE_BASE_BIN=/tmp/authgate-old TARGETS="nginx authgate-base-none authgate-none authgate-base authgate" bash benches/load.sh
#
# The fast path (`server.fast_path`, issue 18) A/B, in every run: authgate-general-none and
# authgate-general are authgate-none and authgate with `fast_path = false` under [server]
# (every request through pingora-proxy).
#
# Writes docs/PERFORMANCE.md (machine, versions, table, ratios, targets) unless
# WRITE_DOC=0. Needs: apt-get install -y haproxy nginx-light wrk curl; pip install pyjwt
# cryptography; a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$(cd ../shared/bench && pwd)}
export PASSES=${PASSES:-1}
export TARGETS=${TARGETS:-"upstream nginx haproxy haproxy-jwt authgate-general-none authgate-none authgate-nocache authgate-general authgate authgate-dpop"}
export AUTHGATE_BIN=${AUTHGATE_BIN:-$PWD/target/release/authgate}
[[ -x $AUTHGATE_BIN || ${LOAD_CHECK_ONLY:-0} == 1 ]] || cargo build --release --bin authgate

# The harness, without its last line (`main "$@"`), so its targets can be extended here.
# shellcheck disable=SC1090
source <(sed '$d' "$SHARED/peers.sh")
HERE=$SHARED

# One start function per authgate variant: the harness's adapter with a config addition,
# in a directory named after the target (the harness looks for its stdout.log there).
authgate_variant() {  # TARGET EXTRA PASS PORT
  local d=$RUN_DIR/$1-t$3
  mkdir -p "$d"
  AUTHGATE_EXTRA=$2 authgate_start "$KEYS/jwks.json" "http://127.0.0.1:$JWKS_HTTP_PORT/jwks.json" \
    "$ISSUER" "$AUDIENCE" "$4" "$UP_PORT" "$3" "$d"
}
# The harness writes the config and starts $AUTHGATE_BIN on it; a wrapper edits it first
# (EdDSA allowed; for the `auth = "none"` variant, the route's authentication off), checks
# that each edit took, and then becomes authgate (exec: same PID, so the measured process is
# authgate itself). An edit that does not take stops the wrapper, and the harness with it.
wrapper() {  # NAME NONE_ROUTE(0|1) -> the wrapper's path
  local w=$RUN_DIR/$1-bin
  {
    echo '#!/usr/bin/env bash'
    printf 'bin=%q none=%q general=%q\n' "${WRAP_BIN:-$AUTHGATE_BIN}" "$2" "${GENERAL:-0}"
    cat <<'WRAP'
set -euo pipefail
conf=$3  # the harness runs: BIN run --config FILE
sed -i 's|^algorithms = \["RS256", "ES256"\]$|algorithms = ["RS256", "ES256", "EdDSA"]|' "$conf"
grep -qx 'algorithms = \["RS256", "ES256", "EdDSA"\]' "$conf" \
  || { echo "could not allow EdDSA in $conf" >&2; exit 3; }
if [[ $none == 1 ]]; then
  sed -i 's|^path_prefix = "/"$|&\nauth = "none"|' "$conf"
  grep -qx 'auth = "none"' "$conf" || { echo "could not turn authentication off in $conf" >&2; exit 3; }
fi
if [[ $general == 1 ]]; then
  sed -i 's|^threads = [0-9]*$|&\nfast_path = false|' "$conf"
  grep -qx 'fast_path = false' "$conf" || { echo "could not turn the fast path off in $conf" >&2; exit 3; }
fi
exec "$bin" "$@"
WRAP
  } >"$w"
  chmod +x "$w"
  echo "$w"
}
start_variant() {  # TARGET NONE_ROUTE EXTRA PASS PORT
  local bin
  bin=$(wrapper "$1" "$2") || return 3
  AUTHGATE_BIN=$bin authgate_variant "$1" "$3" "$4" "$5"
}
NO_CACHE=$'[token_cache]\nenabled = false'
start_authgate_none() { start_variant authgate-none 1 "" "$@"; }
start_authgate_nocache() { start_variant authgate-nocache 0 "$NO_CACHE" "$@"; }
start_authgate() { start_variant authgate 0 "" "$@"; }
start_authgate_general_none() { GENERAL=1 start_variant authgate-general-none 1 "" "$@"; }
start_authgate_general() { GENERAL=1 start_variant authgate-general 0 "" "$@"; }
# DPoP: the provider refuses a token without a proof (see the top).
start_authgate_dpop() { AUTHGATE_PROVIDER_EXTRA='dpop = "required"' start_variant authgate-dpop 0 "" "$@"; }
start_authgate_base_none() { WRAP_BIN=${AUTHGATE_BASE_BIN:?} start_variant authgate-base-none 1 "" "$@"; }
start_authgate_base() { WRAP_BIN=${AUTHGATE_BASE_BIN:?} start_variant authgate-base 0 "" "$@"; }

# EdDSA and DPoP: after the harness made its keys, add the Ed25519 key and token and the DPoP
# client key and bound token (see the top).
eval "$(declare -f main | sed 's|^\( *\)\. "\$KEYS/tokens.env";$|\1python3 benches/add_eddsa.py "$KEYS";\n\1python3 benches/add_dpop.py "$KEYS";\n&|')"
declare -f main | grep -q add_eddsa && declare -f main | grep -q add_dpop \
  || die "could not extend the harness's main"

# The harness's run_target, with more names in its `case` (before `authgate)`).
eval "$(declare -f run_target | sed '/^ *authgate)$/i\
        authgate-none) kind=plain; fn=start_authgate_none ;;\
        authgate-nocache) kind=auth; fn=start_authgate_nocache ;;\
        authgate-general-none) kind=plain; fn=start_authgate_general_none ;;\
        authgate-general) kind=auth; fn=start_authgate_general ;;\
        authgate-base-none) kind=plain; fn=start_authgate_base_none ;;\
        authgate-base) kind=auth; fn=start_authgate_base ;;\
        authgate-dpop) kind=dpop; fn=start_authgate_dpop ;;')"
declare -f run_target | grep -q authgate-nocache && declare -f run_target | grep -q authgate-dpop \
  && declare -f run_target | grep -q authgate-general-none \
  || die "could not extend the harness's run_target"
# ... and, for authgate's JWT variants, one more check (with the others, before any
# measurement) and one more measurement: EdDSA.
eval "$(declare -f run_target | sed '/^ *run_checks "\$target (pass \$pass)"/a\
    if [[ $target == authgate* \&\& $kind == auth ]]; then\
      expect "valid EdDSA -> 200, X-User-Id=sub upstream" "$port" 200 "^ok user=${SUBJECT}$" -H "Authorization: Bearer $TOKEN_EDDSA";\
      CHECKS="$CHECK_OK/$CHECK_N";\
      ((CHECK_FAILED == 0)) || log "WARNING: $target failed correctness checks ($CHECKS), see $CHECK_LOG";\
    fi' | sed '/measure "\$pass" "\$target" ES256/a\
    if [[ $target == authgate* \&\& $kind == auth ]]; then\
      measure "$pass" "$target" EdDSA "$pid" "$port" "Authorization: Bearer $TOKEN_EDDSA";\
    fi')"
[[ $(declare -f run_target | grep -c TOKEN_EDDSA) == 2 ]] \
  || die "could not add EdDSA to the harness's run_target"
# ... and, for the DPoP variant (kind dpop), its own checks and its one measurement instead of
# the bearer ones: the `if [[ $kind == plain ]]` of run_checks and of run_target gets a branch
# before it.
dpop_branch() {  # FUNCTION COMMAND
  eval "$(declare -f "$1" | sed "s/^\( *\)if \[\[ \$kind == plain \]\]; then\$/\1if [[ \$kind == dpop ]]; then\n\1    $2;\n\1elif [[ \$kind == plain ]]; then/")"
  [[ $(declare -f "$1" | grep -c 'kind == dpop') == 1 ]] || die "could not add DPoP to the harness's $1"
}
dpop_branch run_checks 'dpop_checks "$port"'
dpop_branch run_target 'measure_dpop "$pass" "$target" "$pid" "$port"'
# The harness's measure, with benches/dpop.lua for its wrk script (it ends with the harness's
# report.lua, which prints the line measure.py reads).
eval "$(declare -f measure | sed '1s/^measure /measure_dpop_wrk /; s|--script "\$HERE/lib/report.lua"|--script "$PWD/benches/dpop.lua"|')"
declare -f measure_dpop_wrk | grep -q 'benches/dpop.lua' \
  || die "could not derive the DPoP measurement from the harness's measure"
# The proofs live in memory (tmpfs) while they are used, and go at exit whatever happens.
eval "harness_$(declare -f cleanup)"
cleanup() { [[ -z ${DPOP_TMP:-} ]] || rm -rf "$DPOP_TMP"; harness_cleanup; }

dpop_checks() {  # PORT: the DPoP variant's checks (in run_checks: same log, same counts)
  local port=$1 sub="^ok user=${SUBJECT}$" dpop="Authorization: DPoP $TOKEN_DPOP" proof other
  proof=$(python3 benches/dpop_proofs.py "$KEYS" "http://127.0.0.1:$port/check") \
    && other=$(python3 benches/dpop_proofs.py "$KEYS" "http://127.0.0.1:$port/other") \
    || die "could not make DPoP proofs for the checks"
  expect "DPoP token + fresh proof -> 200, X-User-Id=sub" "$port" 200 "$sub" -H "$dpop" -H "DPoP: $proof"
  expect "the same proof again (replayed jti) -> 401" "$port" 401 '' -H "$dpop" -H "DPoP: $proof"
  expect "DPoP-bound token as Bearer -> 401" "$port" 401 '' -H "Authorization: Bearer $TOKEN_DPOP"
  expect "DPoP token without a proof -> 401" "$port" 401 '' -H "$dpop"
  expect "proof made for another URL (htu) -> 401" "$port" 401 '' -H "$dpop" -H "DPoP: $other"
  expect "unbound ES256 token as Bearer -> 401 (required)" "$port" 401 '' -H "Authorization: Bearer $TOKEN_ES256"
  expect "no token -> 401" "$port" 401 ''
}

measure_dpop() {  # PASS TARGET SUT_PID PORT: sign the proofs, then measure with them
  local dir=$RUN_DIR/$2-t$1 url="http://127.0.0.1:$4/" n
  n=$((${DPOP_RATE:-30000} * (WARMUP + DURATION) * (1 + RETRIES)))
  if [[ -z ${DPOP_TMP:-} ]]; then
    local tmp=/dev/shm
    [[ -d $tmp && -w $tmp ]] || tmp=$RUN_DIR
    DPOP_TMP=$(mktemp -d "$tmp/authgate-dpop.XXXXXX")
  fi
  rm -f "$DPOP_TMP/state"
  log "$2: signing $n DPoP proofs for GET $url"
  python3 benches/dpop_proofs.py "$KEYS" "$url" --count "$n" --out "$DPOP_TMP/proofs" >"$dir/proofs.json" \
    || die "could not make the DPoP proofs"
  log "  $(cat "$dir/proofs.json")"
  DPOP_PROOFS=$DPOP_TMP/proofs DPOP_STATE=$DPOP_TMP/state DPOP_LOG=$dir/dpop-wrk.jsonl \
    DPOP_TOKEN=$TOKEN_DPOP DPOP_THREADS=$WRK_THREADS BENCH_REPORT_LUA=$HERE/lib/report.lua \
    measure_dpop_wrk "$1" "$2" DPoP "$3" "$4" ""
  rm -f "$DPOP_TMP/proofs"
  python3 - "$dir" <<'PY' >&2 || log "WARNING: $2 ran out of DPoP proofs (raise DPOP_RATE); its rate is not a result"
import json, sys
d = sys.argv[1]
made = json.load(open(f"{d}/proofs.json"))
runs = [json.loads(l) for l in open(f"{d}/dpop-wrk.jsonl")]
used, out = sum(r["used"] for r in runs), sum(r["ran_out"] for r in runs)
print(f"  DPoP proofs: {used} of {made['count']} sent by {len(runs)} wrk runs, the last "
      f"{runs[-1]['time'] - made['first_iat']} s after the first was signed; ran out: {out or 'no'}")
sys.exit(1 if out else 0)
PY
}

# LOAD_CHECK_ONLY=1: stop here, after every extension of the harness applied (used by CI).
[[ ${LOAD_CHECK_ONLY:-0} == 1 ]] && { echo "benches/load.sh: harness extended"; exit 0; }

main
run=$(ls -1d "$WORK"/runs/*/ | tail -1)
# TLS and HTTP/2 (issue 17): nginx, HAProxy jwt_verify and authgate behind TLS, with the same
# keys and tokens, in the same run (see benches/tls_load.py); load_report.py puts its table in
# docs/PERFORMANCE.md next to the plain-HTTP one. TLS=0 skips it.
if [[ ${TLS:-1} == 1 ]]; then
  python3 benches/tls_load.py --keys "$KEYS" --work "$run/tls" --authgate "$AUTHGATE_BIN" \
    --duration "${TLS_DURATION:-10}" --rounds "${TLS_ROUNDS:-2}"
fi
python3 benches/load_report.py "$run" "${WRITE_DOC:-1}"

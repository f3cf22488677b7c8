#!/usr/bin/env bash
# The load benchmark: authgate next to the peers users would pick instead, in ONE run, on
# ../shared/bench (wrk; CPU µs per request of the proxy process tree from /proc; one worker;
# upstream and wrk outside the measured process). Absolute times on shared machines are
# noise: the ratios within one run are the result.
#
#   bash benches/load.sh                   # as root, from the project root; ~4 min
#   PASSES="1 2" bash benches/load.sh      # also the two-worker pass
#
# Targets (in this order): upstream alone, nginx plain proxy, HAProxy plain, HAProxy
# jwt_verify (RS256, ES256), authgate on an `auth = "none"` route, authgate RS256/ES256/EdDSA
# with the verified-token cache off, and with it on. The harness's peers have no Ed25519
# key: benches/add_eddsa.py adds one (kid "bench-ed") to its JWKS and mints TOKEN_EDDSA with
# the RS256 token's claims; only authgate is measured with it.
#
# AUTHGATE_BASE_BIN=path/to/an/older/authgate adds two targets for an A/B in the same run:
# authgate-base-none and authgate-base (that binary's `auth = "none"` route and cache-on
# JWT variants); name them in TARGETS, e.g.
#   AUTHGATE_BASE_BIN=/tmp/authgate-old TARGETS="nginx authgate-base-none authgate-none authgate-base authgate" bash benches/load.sh
#
# Writes docs/PERFORMANCE.md (machine, versions, table, ratios, targets) unless
# WRITE_DOC=0. Needs: apt-get install -y haproxy nginx-light wrk curl; pip install pyjwt
# cryptography; a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$(cd ../shared/bench && pwd)}
export PASSES=${PASSES:-1}
export TARGETS=${TARGETS:-"upstream nginx haproxy haproxy-jwt authgate-none authgate-nocache authgate"}
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
    printf 'bin=%q none=%q\n' "${WRAP_BIN:-$AUTHGATE_BIN}" "$2"
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
start_authgate_base_none() { WRAP_BIN=${AUTHGATE_BASE_BIN:?} start_variant authgate-base-none 1 "" "$@"; }
start_authgate_base() { WRAP_BIN=${AUTHGATE_BASE_BIN:?} start_variant authgate-base 0 "" "$@"; }

# EdDSA: after the harness made its keys, add the Ed25519 key and token (see the top).
eval "$(declare -f main | sed 's|^\( *\)\. "\$KEYS/tokens.env";$|\1python3 benches/add_eddsa.py "$KEYS";\n&|')"
declare -f main | grep -q add_eddsa || die "could not extend the harness's main"

# The harness's run_target, with two more names in its `case` (before `authgate)`).
eval "$(declare -f run_target | sed '/^ *authgate)$/i\
        authgate-none) kind=plain; fn=start_authgate_none ;;\
        authgate-nocache) kind=auth; fn=start_authgate_nocache ;;\
        authgate-base-none) kind=plain; fn=start_authgate_base_none ;;\
        authgate-base) kind=auth; fn=start_authgate_base ;;')"
declare -f run_target | grep -q authgate-nocache || die "could not extend the harness's run_target"
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
# LOAD_CHECK_ONLY=1: stop here, after every extension of the harness applied (used by CI).
[[ ${LOAD_CHECK_ONLY:-0} == 1 ]] && { echo "benches/load.sh: harness extended"; exit 0; }

main
run=$(ls -1d "$WORK"/runs/*/ | tail -1)
python3 benches/load_report.py "$run" "${WRITE_DOC:-1}"

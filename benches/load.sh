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
# Writes docs/PERFORMANCE.md (machine, versions, table, ratios, targets) unless
# WRITE_DOC=0. Needs: apt-get install -y haproxy nginx-light wrk curl; pip install pyjwt
# cryptography; a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$(cd ../shared/bench && pwd)}
export PASSES=${PASSES:-1}
export TARGETS=${TARGETS:-"upstream nginx haproxy haproxy-jwt authgate-none authgate-nocache authgate"}
export AUTHGATE_BIN=${AUTHGATE_BIN:-$PWD/target/release/authgate}
[[ -x $AUTHGATE_BIN ]] || cargo build --release --bin authgate

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
# (EdDSA allowed; for the `auth = "none"` variant, the route's authentication off) and then
# becomes authgate (exec: same PID, so the measured process is authgate itself).
wrapper() {  # NAME SED_SCRIPT
  local w=$RUN_DIR/$1-bin
  cat >"$w" <<WRAP
#!/usr/bin/env bash
sed -i -e 's|^algorithms = \["RS256", "ES256"\]\$|algorithms = ["RS256", "ES256", "EdDSA"]|' $2 "\$3"
grep -q EdDSA "\$3" || { echo "could not allow EdDSA in \$3" >&2; exit 3; }
exec "$AUTHGATE_BIN" "\$@"
WRAP
  chmod +x "$w"
  echo "$w"
}
NO_CACHE=$'[token_cache]\nenabled = false'
NONE_ROUTE="-e 's|^path_prefix = \"/\"\$|&\\nauth = \"none\"|'"
start_authgate_none() {
  AUTHGATE_BIN=$(wrapper authgate-none "$NONE_ROUTE") authgate_variant authgate-none "" "$@"
}
start_authgate_nocache() {
  AUTHGATE_BIN=$(wrapper authgate-nocache "") authgate_variant authgate-nocache "$NO_CACHE" "$@"
}
start_authgate() { AUTHGATE_BIN=$(wrapper authgate "") authgate_variant authgate "" "$@"; }

# EdDSA: after the harness made its keys, add the Ed25519 key and token (see the top).
eval "$(declare -f main | sed 's|^\( *\)\. "\$KEYS/tokens.env";$|\1python3 benches/add_eddsa.py "$KEYS";\n&|')"
declare -f main | grep -q add_eddsa || die "could not extend the harness's main"

# The harness's run_target, with two more names in its `case` (before `authgate)`).
eval "$(declare -f run_target | sed '/^ *authgate)$/i\
        authgate-none) kind=plain; fn=start_authgate_none ;;\
        authgate-nocache) kind=auth; fn=start_authgate_nocache ;;')"
declare -f run_target | grep -q authgate-nocache || die "could not extend the harness's run_target"
# ... and, for authgate's JWT variants, one more check and one more measurement: EdDSA.
eval "$(declare -f run_target | sed '/measure "\$pass" "\$target" ES256/a\
    if [[ $target == authgate* \&\& $kind == auth ]]; then\
      expect "valid EdDSA -> 200, X-User-Id=sub upstream" "$port" 200 "^ok user=${SUBJECT}$" -H "$auth $TOKEN_EDDSA";\
      CHECKS="$CHECK_OK/$CHECK_N";\
      measure "$pass" "$target" EdDSA "$pid" "$port" "$auth $TOKEN_EDDSA";\
    fi')"
declare -f run_target | grep -q TOKEN_EDDSA || die "could not add EdDSA to the harness's run_target"

main
run=$(ls -1d "$WORK"/runs/*/ | tail -1)
python3 benches/load_report.py "$run" "${WRITE_DOC:-1}"

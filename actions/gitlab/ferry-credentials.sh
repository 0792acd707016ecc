# Ferry: exchange this GitLab job's ID token for short-lived credentials and
# export them into the job's shell. Source it (`. ferry-credentials.sh`);
# ferry.gitlab-ci.yml carries this same text as the .ferry job's
# before_script (a test keeps the two identical).
#
# Reads:  FERRY_URL, FERRY_POLICY (required); FERRY_ID_TOKEN (from the job's
#         id_tokens); FERRY_DURATION, FERRY_CLIENT (auto | ferry | curl),
#         FERRY_MAX_ATTEMPTS (default 3).
# Exports the variables `ferry exchange --format env` prints: AWS_ACCESS_KEY_ID,
#         AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION;
#         CLOUDSDK_AUTH_ACCESS_TOKEN, GOOGLE_OAUTH_ACCESS_TOKEN; or FERRY_TOKEN.
# POSIX sh: it runs in bash, dash and busybox ash images alike.
ferry_credentials() {
  # Tracing (CI_DEBUG_TRACE, set -x) would print every credential: switch it
  # off while they are in variables, and back on after.
  case $- in *x*) set +x; ferry_xtrace=1 ;; *) ferry_xtrace= ;; esac
  ferry_credentials_run
  ferry_rc=$?
  if [ -n "$ferry_xtrace" ]; then set -x; fi
  return "$ferry_rc"
}

ferry_fail() {
  printf 'Ferry: %s\n' "$*" >&2
  return 1
}

ferry_credentials_run() {
  [ -n "${FERRY_URL:-}" ] || { ferry_fail "FERRY_URL is not set: give the job the broker's URL, e.g. https://ferry.example.com"; return 1; }
  [ -n "${FERRY_POLICY:-}" ] || { ferry_fail "FERRY_POLICY is not set: name the trust policy to exchange the token under"; return 1; }
  [ -n "${FERRY_ID_TOKEN:-}" ] || { ferry_fail "FERRY_ID_TOKEN is not set: add \`id_tokens: {FERRY_ID_TOKEN: {aud: ferry}}\` to the job (or extend .ferry)"; return 1; }
  # Checked so the JSON built below needs no escaping and cannot be bent.
  case $FERRY_POLICY in *[!A-Za-z0-9._-]*) ferry_fail "FERRY_POLICY \"$FERRY_POLICY\" has characters a policy name cannot have"; return 1 ;; esac
  case $FERRY_ID_TOKEN in *[!A-Za-z0-9._-]*) ferry_fail "FERRY_ID_TOKEN is not a JWT"; return 1 ;; esac
  case ${FERRY_DURATION:-} in *[!0-9a-z.]*) ferry_fail "FERRY_DURATION \"$FERRY_DURATION\" is not a duration such as 15m"; return 1 ;; esac
  ferry_check_url "$FERRY_URL" || return 1

  case ${FERRY_CLIENT:-auto} in
    auto) if command -v ferry >/dev/null 2>&1; then ferry_with_cli; else ferry_with_curl; fi ;;
    ferry) ferry_with_cli ;;
    curl) ferry_with_curl ;;
    *) ferry_fail "FERRY_CLIENT \"$FERRY_CLIENT\" is not auto, ferry or curl"; return 1 ;;
  esac
}

# The job's ID token must not travel in clear: https, or http to loopback
# only (a broker beside the job, as in tests).
ferry_check_url() {
  case $1 in
    https://*) return 0 ;;
    http://*) ;;
    *) ferry_fail "FERRY_URL \"$1\" must start with https://"; return 1 ;;
  esac
  ferry_host=${1#http://}
  ferry_host=${ferry_host%%/*}
  case $ferry_host in *@*) ferry_fail "FERRY_URL must not carry credentials"; return 1 ;; esac
  case $ferry_host in
    localhost | localhost:* | 127.* | '[::1]' | '[::1]:'*) return 0 ;;
  esac
  ferry_fail "FERRY_URL must use https (plain http is allowed only to localhost): http://$ferry_host"
  return 1
}

# The ferry CLI, when the job's image has it: it finds FERRY_ID_TOKEN itself,
# retries 429/502/503 honouring Retry-After, and prints shell-quoted exports.
ferry_with_cli() {
  command -v ferry >/dev/null 2>&1 || { ferry_fail "FERRY_CLIENT=ferry but no ferry binary is on PATH"; return 1; }
  if [ -n "${FERRY_DURATION:-}" ]; then
    ferry_out=$(ferry exchange --url "$FERRY_URL" --policy "$FERRY_POLICY" --duration "$FERRY_DURATION" --format env) || return 1
  else
    ferry_out=$(ferry exchange --url "$FERRY_URL" --policy "$FERRY_POLICY" --format env) || return 1
  fi
  # Every value in it is single-quoted by the CLI; check the shape before
  # evaluating anything. (No grep -q: it may stop reading early, and under
  # pipefail printf's SIGPIPE would then turn a match into a miss.)
  if printf '%s\n' "$ferry_out" | grep -v "^export [A-Z_][A-Z0-9_]*='[^']*'\$" >/dev/null; then
    ferry_out=
    ferry_fail "ferry exchange printed something other than export lines; refusing to evaluate it"
    return 1
  fi
  eval "$ferry_out"
  ferry_names=$(printf '%s\n' "$ferry_out" | sed -n "s/^export \\([A-Z_][A-Z0-9_]*\\)=.*/\\1/p" | tr '\n' ' ')
  ferry_out=
  printf 'Ferry: policy "%s" granted; exported %s(ferry exchange)\n' "$FERRY_POLICY" "$ferry_names"
}

# ferry_json_string KEY: the first string value of KEY in $ferry_body. Only
# values without escapes are taken: credentials never have them, and a value
# that does cannot be mistaken for one. Prints nothing when absent.
ferry_json_string() {
  printf '%s' "$ferry_body" | sed -n "s/^.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"\\\\]*\\)\".*\$/\\1/p" | head -n 1
}

# ferry_json_text KEY: a string value that may hold escapes (the broker's
# error_description quotes claim values), unescaped for reading. Escaped
# quotes and backslashes are swapped for placeholders first so that the
# value ends at the first real quote (POSIX sed has no alternation).
ferry_json_text() {
  printf '%s' "$ferry_body" |
    sed -n -e 's/\\\\/<BS>/g' -e 's/\\"/<Q>/g' \
      -e "s/^.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*\$/\\1/p" |
    head -n 1 |
    sed -e 's/<Q>/"/g' -e 's/\\u003c/</g' -e 's/\\u003e/>/g' -e 's/\\u0026/\&/g' -e 's/\\n/ /g' -e 's/<BS>/\\/g'
}

# Plain curl, for images without the CLI. The token goes to curl on stdin,
# never on its command line, where other processes could read it.
ferry_with_curl() {
  command -v curl >/dev/null 2>&1 || { ferry_fail "neither the ferry CLI nor curl is in this image: install one (see actions/gitlab/README.md)"; return 1; }
  ferry_endpoint=${FERRY_URL%/}/v1/exchange
  ferry_max=${FERRY_MAX_ATTEMPTS:-3}
  case $ferry_max in '' | *[!0-9]*) ferry_fail "FERRY_MAX_ATTEMPTS \"$ferry_max\" is not a number"; return 1 ;; esac
  [ "$ferry_max" -ge 1 ] || ferry_max=1
  ferry_headers=$(mktemp) || { ferry_fail "cannot create a temporary file"; return 1; }
  ferry_attempt=1
  while :; do
    ferry_body=
    ferry_status=000
    ferry_resp=$(
      if [ -n "${FERRY_DURATION:-}" ]; then
        printf '{"policy":"%s","token":"%s","duration":"%s"}' "$FERRY_POLICY" "$FERRY_ID_TOKEN" "$FERRY_DURATION"
      else
        printf '{"policy":"%s","token":"%s"}' "$FERRY_POLICY" "$FERRY_ID_TOKEN"
      fi | curl --silent --show-error --max-time 30 --proto '=https,http' \
        -H 'Content-Type: application/json' -H 'Accept: application/json' -H 'Expect:' \
        -A 'ferry-gitlab/1' -D "$ferry_headers" --data-binary @- \
        -w '\n%{http_code}' "$ferry_endpoint"
    )
    ferry_curl_rc=$?
    if [ "$ferry_curl_rc" -eq 0 ]; then
      ferry_status=$(printf '%s' "$ferry_resp" | tail -n 1)
      ferry_body=$(printf '%s' "$ferry_resp" | sed '$d')
    fi
    ferry_resp=
    if [ "$ferry_status" = 200 ]; then break; fi

    ferry_wait=
    if [ "$ferry_curl_rc" -ne 0 ]; then
      ferry_why="cannot reach the broker (curl exit $ferry_curl_rc)"
    else
      ferry_code=$(ferry_json_string error)
      if [ -n "$ferry_code" ]; then
        ferry_why="$ferry_code: $(ferry_json_text error_description) (HTTP $ferry_status, request_id $(ferry_json_string request_id))"
      else
        ferry_why="the broker answered HTTP $ferry_status without a Ferry error body (a proxy in the way?)"
      fi
      case $ferry_status in
        429 | 503) ferry_wait=$(sed -n 's/^[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$ferry_headers" | head -n 1) ;;
        *) rm -f "$ferry_headers"; ferry_fail "$ferry_why"; return 1 ;;
      esac
    fi
    if [ "$ferry_attempt" -ge "$ferry_max" ]; then
      rm -f "$ferry_headers"
      ferry_fail "$ferry_why"
      return 1
    fi
    # Back off as asked, or 1s, 2s, 4s…; a broker that asks for more than
    # 30s is overloaded for longer than a job should sit idle.
    [ -n "$ferry_wait" ] || ferry_wait=$((1 << (ferry_attempt - 1)))
    if [ "$ferry_wait" -gt 30 ]; then
      rm -f "$ferry_headers"
      ferry_fail "$ferry_why; the broker asks to retry after ${ferry_wait}s, longer than this job waits (30s)"
      return 1
    fi
    ferry_attempt=$((ferry_attempt + 1))
    printf 'Ferry: %s; retrying in %ss (attempt %s of %s)\n' "$ferry_why" "$ferry_wait" "$ferry_attempt" "$ferry_max" >&2
    sleep "$ferry_wait"
  done
  rm -f "$ferry_headers"

  ferry_expires=$(ferry_json_string expires_at)
  ferry_v1=$(ferry_json_string access_key_id)
  if [ -n "$ferry_v1" ]; then
    ferry_v2=$(ferry_json_string secret_access_key)
    ferry_v3=$(ferry_json_string session_token)
    ferry_v4=$(ferry_json_string expiration)
    if [ -z "$ferry_v2" ] || [ -z "$ferry_v3" ]; then ferry_body=; ferry_fail "the broker's aws answer lacks a secret key or session token"; return 1; fi
    export AWS_ACCESS_KEY_ID="$ferry_v1" AWS_SECRET_ACCESS_KEY="$ferry_v2" AWS_SESSION_TOKEN="$ferry_v3" AWS_CREDENTIAL_EXPIRATION="$ferry_v4"
    ferry_names="AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_CREDENTIAL_EXPIRATION"
  else
    ferry_v1=$(ferry_json_string access_token)
    if [ -n "$ferry_v1" ]; then
      export CLOUDSDK_AUTH_ACCESS_TOKEN="$ferry_v1" GOOGLE_OAUTH_ACCESS_TOKEN="$ferry_v1"
      ferry_names="CLOUDSDK_AUTH_ACCESS_TOKEN GOOGLE_OAUTH_ACCESS_TOKEN"
    else
      ferry_v1=$(ferry_json_string token)
      if [ -z "$ferry_v1" ]; then ferry_body=; ferry_fail "the broker answered 200 without a credential this script knows"; return 1; fi
      export FERRY_TOKEN="$ferry_v1"
      ferry_names="FERRY_TOKEN"
    fi
  fi
  ferry_request=$(ferry_json_string request_id)
  ferry_body= ferry_v1= ferry_v2= ferry_v3= ferry_v4=
  printf 'Ferry: policy "%s" granted; exported %s, valid until %s (request %s, job %s)\n' \
    "$FERRY_POLICY" "$ferry_names" "$ferry_expires" "$ferry_request" "${CI_JOB_ID:-?}"
}

ferry_credentials || exit $?

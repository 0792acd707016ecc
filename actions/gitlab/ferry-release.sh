# Ferry: at the job's end, release every credential this job got (POST
# /v1/release: a GitHub token is deleted at GitHub, a Ferry-signed token
# revoked), then delete the job-private files. The CI/CD component
# (templates/credentials.yml) and the older template (ferry.gitlab-ci.yml)
# carry this same text as their after_script (a test keeps the copies
# identical).
#
# after_script runs in a shell of its own, with the job's variables but none
# of the before_script's: what release needs is in the files the exchange
# left, one a credential, 0600 in a 0700 directory outside the project:
# ${TMPDIR:-/tmp}/ferry-release-UID/job-$CI_JOB_ID/REQUEST_ID.json, the
# files `ferry release` reads (ferry-credentials.sh writes the same ones
# when it exchanges with curl).
#
# Reads:  FERRY_RELEASE (true | false; default true), FERRY_CLIENT (auto |
#         ferry | curl), FERRY_JSON (auto | jq | sed), FERRY_MAX_ATTEMPTS
#         (default 3).
# A release that fails is a warning: the credential expires by itself, and
# an after_script cannot fail the job anyway. Nothing here prints a secret.
# POSIX sh: it runs in bash, dash and busybox ash images alike.
ferry_release_main() {
  # Tracing (CI_DEBUG_TRACE, set -x) would print the release tokens.
  case $- in *x*) set +x; ferry_xtrace=1 ;; *) ferry_xtrace= ;; esac
  ferry_release_run
  # The job-private AWS config of an aws profile, and whatever is left of
  # the release files (the job is over: nothing will retry them).
  rm -rf "${TMPDIR:-/tmp}/ferry-${CI_JOB_ID:-job}".* 2>/dev/null
  if [ -n "$ferry_rdir" ]; then
    rm -f "$ferry_rdir"/*.json "$ferry_rdir"/.pending-* 2>/dev/null
    rmdir "$ferry_rdir" 2>/dev/null
  fi
  ferry_rtok= ferry_rpres= ferry_body=
  if [ -n "$ferry_xtrace" ]; then set -x; fi
  return 0
}

ferry_warn() {
  printf 'Ferry: warning: %s\n' "$*" >&2
}

# ferry_release_dir prints the job's release directory, by the rule of
# `ferry exchange` (internal/client/release.go).
ferry_release_dir() {
  if [ -n "${RUNNER_TEMP:-}" ]; then
    ferry_d="${RUNNER_TEMP%/}/ferry-release"
  else
    ferry_t=${TMPDIR:-/tmp}
    case $ferry_t in /*) ;; *) ferry_warn "TMPDIR \"$ferry_t\" is not an absolute path"; return 1 ;; esac
    ferry_j=local
    case ${CI_JOB_ID:-} in '' | *[!A-Za-z0-9_-]*) ;; *) ferry_j="job-$CI_JOB_ID" ;; esac
    ferry_d="${ferry_t%/}/ferry-release-$(id -u)/$ferry_j"
  fi
  printf '%s' "$ferry_d"
}

# ferry_private PATH: PATH is no symlink, belongs to this user and is closed
# to everyone else (what `ferry release` also asks of its files).
ferry_private() {
  [ ! -L "$1" ] || return 1
  ferry_ls=$(ls -ldn "$1" 2>/dev/null) || return 1
  case $ferry_ls in ????------*) ;; *) return 1 ;; esac
  [ "$(printf '%s\n' "$ferry_ls" | awk '{print $3}')" = "$(id -u)" ]
}

ferry_release_run() {
  ferry_rdir=
  case ${FERRY_RELEASE:-true} in
    false)
      printf 'Ferry: FERRY_RELEASE is false: the credentials are not released; they expire by themselves\n'
      ferry_rdir=$(ferry_release_dir) || ferry_rdir=
      return 0 ;;
    true) ;;
    *) ferry_warn "FERRY_RELEASE \"$FERRY_RELEASE\" is not true or false; releasing" ;;
  esac
  ferry_rdir=$(ferry_release_dir) || { ferry_rdir=; return 0; }

  case ${FERRY_CLIENT:-auto} in
    curl) ferry_client=curl ;;
    *) if command -v ferry >/dev/null 2>&1; then ferry_client=ferry; else ferry_client=curl; fi ;;
  esac
  if [ "$ferry_client" = ferry ]; then
    # Each file names the broker its credential came from: the release
    # token goes there and nowhere else (not to a FERRY_URL left over).
    if ! (unset FERRY_URL; ferry release); then
      ferry_warn "ferry release could not release every credential (see above); those expire by themselves"
    fi
    return 0
  fi

  [ -d "$ferry_rdir" ] || return 0 # the job got no credential
  if ! ferry_private "$ferry_rdir"; then
    ferry_warn "$ferry_rdir is not a private directory of this user; not releasing from it"
    ferry_rdir=
    return 0
  fi
  command -v curl >/dev/null 2>&1 || { ferry_warn "neither the ferry CLI nor curl is in this image: the credentials expire by themselves"; return 0; }
  case ${FERRY_JSON:-auto} in
    jq) if command -v jq >/dev/null 2>&1; then ferry_json=jq; else ferry_warn "FERRY_JSON=jq but jq is not in this image; reading with sed"; ferry_json=sed; fi ;;
    sed) ferry_json=sed ;;
    *) if command -v jq >/dev/null 2>&1; then ferry_json=jq; else ferry_json=sed; fi ;;
  esac
  for ferry_f in "$ferry_rdir"/*.json; do
    [ -f "$ferry_f" ] || continue
    ferry_release_file "$ferry_f"
    rm -f "$ferry_f"
  done
  return 0
}

# ferry_field KEY: a top-level string of the JSON in $ferry_body that has
# no escapes (release tokens, ids, credentials and times never do).
ferry_field() {
  if [ "$ferry_json" = jq ]; then
    printf '%s' "$ferry_body" | jq -r ".$1 | strings" 2>/dev/null | head -n 1
    return 0
  fi
  printf '%s' "$ferry_body" | sed -n "s/^.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"\\\\]*\\)\".*\$/\\1/p" | head -n 1
}

# ferry_text KEY: a top-level string that may hold escapes (the broker's
# words), unescaped for reading, on one line.
ferry_text() {
  if [ "$ferry_json" = jq ]; then
    printf '%s' "$ferry_body" | jq -r ".$1 | strings" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'
    return 0
  fi
  printf '%s' "$ferry_body" |
    sed -n -e 's/\\\\/<BS>/g' -e 's/\\"/<Q>/g' \
      -e "s/^.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*\$/\\1/p" |
    head -n 1 |
    sed -e 's/<Q>/"/g' -e 's/\\u003c/</g' -e 's/\\u003e/>/g' -e 's/\\u0026/\&/g' -e 's/\\n/ /g' -e 's/<BS>/\\/g'
}

# ferry_true KEY: the top-level KEY is the boolean true.
ferry_true() {
  if [ "$ferry_json" = jq ]; then
    printf '%s' "$ferry_body" | jq -e ".$1 == true" >/dev/null 2>&1
    return
  fi
  printf '%s' "$ferry_body" | grep "\"$1\"[[:space:]]*:[[:space:]]*true" >/dev/null
}

# ferry_release_file FILE releases the credential FILE describes.
ferry_release_file() {
  ferry_rid=$(basename "$1" .json)
  if ! ferry_private "$1"; then
    ferry_warn "release file $1 is not private to this user; refusing it"
    return 0
  fi
  if [ "$(wc -c <"$1")" -gt 65536 ]; then
    ferry_warn "release file $1 is larger than 65536 bytes; refusing it"
    return 0
  fi
  ferry_body=$(cat "$1")
  ferry_url=$(ferry_field url)
  ferry_p=$(ferry_field policy)
  ferry_rtok=$(ferry_field release_token)
  ferry_rpres=$(ferry_field token)
  ferry_rexp=$(ferry_field expires_at)
  ferry_what="request $ferry_rid (policy ${ferry_p:-?})"
  ferry_later="; it expires by itself${ferry_rexp:+ at $ferry_rexp}"
  if [ "$(ferry_field request_id)" != "$ferry_rid" ] || ! printf '%s' "$ferry_body" | grep '"version"[[:space:]]*:[[:space:]]*1[,}]' >/dev/null; then
    ferry_body= ferry_rtok= ferry_rpres=
    ferry_warn "release file $1 is not one this script or \`ferry exchange\` wrote"
    return 0
  fi
  ferry_body=
  # What goes into the request body and the URL is checked first, so that
  # nothing in a file can bend either.
  case $ferry_rid$ferry_rtok in *[!A-Za-z0-9_-]*) ferry_rtok=; ferry_warn "release file $1 holds a request id or release token this script cannot send"; return 0 ;; esac
  case $ferry_rpres in *[!A-Za-z0-9_]*) ferry_rtok= ferry_rpres=; ferry_warn "release file $1 holds a credential this script cannot send"; return 0 ;; esac
  if [ -z "$ferry_rtok" ]; then ferry_warn "$ferry_what: the release file has no release token$ferry_later"; return 0; fi
  if ! ferry_release_url "$ferry_url"; then
    ferry_rtok= ferry_rpres=
    ferry_warn "$ferry_what: the release file's broker URL \"$ferry_url\" is not https (or http to localhost)$ferry_later"
    return 0
  fi
  ferry_release_post "${ferry_url%/}/v1/release"
  ferry_rc=$?
  ferry_rtok= ferry_rpres=
  if [ "$ferry_rc" -ne 0 ]; then
    ferry_warn "could not release $ferry_what: $ferry_why$ferry_later"
    return 0
  fi
  ferry_detail=$(ferry_text detail)
  if ferry_true revoked; then
    ferry_how="released; it no longer works"
  elif [ -z "$ferry_detail" ]; then
    ferry_how="released$ferry_later"
  else
    ferry_how=released
  fi
  ferry_body=
  printf 'Ferry: %s: %s%s (curl+%s)\n' "$ferry_what" "$ferry_how" "${ferry_detail:+: $ferry_detail}" "$ferry_json"
}

# ferry_release_url URL: https, or http to loopback only, and no character
# a broker URL does not have (the same rule as the exchange's).
ferry_release_url() {
  case $1 in '' | *[!]A-Za-z0-9.:/_~%@[-]*) return 1 ;; esac
  case $1 in
    https://*) ferry_host=${1#https://} ;;
    http://*) ferry_host=${1#http://} ;;
    *) return 1 ;;
  esac
  ferry_host=${ferry_host%%/*}
  case $ferry_host in '' | *@*) return 1 ;; esac
  case $1 in https://*) return 0 ;; esac
  case $ferry_host in
    localhost | localhost:* | 127.* | '[::1]' | '[::1]:'*) return 0 ;;
  esac
  return 1
}

# ferry_release_post ENDPOINT: one release, trying again on 429, 502 and
# 503 (honouring Retry-After) and network errors. The body goes to curl on
# stdin, never on its command line. The answer is left in ferry_body, the
# reason for a failure in ferry_why.
ferry_release_post() {
  ferry_max=${FERRY_MAX_ATTEMPTS:-3}
  case $ferry_max in '' | *[!0-9]*) ferry_max=3 ;; esac
  [ "$ferry_max" -ge 1 ] || ferry_max=1
  ferry_headers=$(mktemp) && ferry_errs=$(mktemp) || { ferry_why="cannot create a temporary file"; return 1; }
  ferry_attempt=1
  while :; do
    ferry_body=
    ferry_status=000
    ferry_resp=$(
      if [ -n "$ferry_rpres" ]; then
        printf '{"request_id":"%s","release_token":"%s","token":"%s"}' "$ferry_rid" "$ferry_rtok" "$ferry_rpres"
      else
        printf '{"request_id":"%s","release_token":"%s"}' "$ferry_rid" "$ferry_rtok"
      fi | curl --silent --show-error --max-time 30 --proto '=https,http' \
        -H 'Content-Type: application/json' -H 'Accept: application/json' -H 'Expect:' \
        -A 'ferry-gitlab/1 release' -D "$ferry_headers" --data-binary @- \
        -w '\n%{http_code}' "$1" 2>"$ferry_errs"
    )
    ferry_curl_rc=$?
    if [ "$ferry_curl_rc" -eq 0 ]; then
      ferry_status=$(printf '%s' "$ferry_resp" | tail -n 1)
      ferry_body=$(printf '%s' "$ferry_resp" | sed '$d')
    fi
    ferry_resp=
    if [ "$ferry_status" = 200 ]; then
      rm -f "$ferry_headers" "$ferry_errs"
      if ferry_true released; then return 0; fi
      ferry_body=
      ferry_why="the broker answered 200 with a body that is not a release"
      return 1
    fi
    ferry_wait=
    if [ "$ferry_curl_rc" -ne 0 ]; then
      ferry_why="cannot reach the broker: $(head -n 1 "$ferry_errs" | sed 's/^curl: //') (curl exit $ferry_curl_rc)"
    else
      ferry_code=$(ferry_field error)
      if [ -n "$ferry_code" ]; then
        ferry_why="$ferry_code: $(ferry_text error_description) (HTTP $ferry_status)"
      else
        ferry_why="the broker answered HTTP $ferry_status without a Ferry error body (a proxy in the way?)"
      fi
      ferry_body=
      case $ferry_status in
        429 | 502 | 503) ferry_wait=$(sed -n 's/^[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$ferry_headers" | head -n 1) ;;
        *) rm -f "$ferry_headers" "$ferry_errs"; return 1 ;;
      esac
    fi
    if [ "$ferry_attempt" -ge "$ferry_max" ]; then
      rm -f "$ferry_headers" "$ferry_errs"
      return 1
    fi
    [ -n "$ferry_wait" ] || ferry_wait=$((1 << (ferry_attempt - 1)))
    if [ "$ferry_wait" -gt 30 ]; then
      rm -f "$ferry_headers" "$ferry_errs"
      ferry_why="$ferry_why; the broker asks to retry after ${ferry_wait}s, longer than this job waits (30s)"
      return 1
    fi
    ferry_attempt=$((ferry_attempt + 1))
    printf 'Ferry: releasing request %s: %s; retrying in %ss (attempt %s of %s)\n' "$ferry_rid" "$ferry_why" "$ferry_wait" "$ferry_attempt" "$ferry_max" >&2
    sleep "$ferry_wait"
  done
}

ferry_release_main || true

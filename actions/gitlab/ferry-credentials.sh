# Ferry: exchange this GitLab job's ID token for short-lived credentials and
# hand them to the job's own shell. Source it (`. ferry-credentials.sh`); the
# CI/CD component (templates/credentials.yml) and the older template
# (ferry.gitlab-ci.yml) carry this same text as their before_script (a test
# keeps the copies identical).
#
# Reads:  FERRY_URL (required); FERRY_POLICY, or FERRY_POLICIES (several
#         credentials, one a line: POLICY [aws-profile=NAME]
#         [env-prefix=PREFIX_] [duration=D]); FERRY_AWS_PROFILE (with
#         FERRY_POLICY); FERRY_ID_TOKEN (from the job's id_tokens);
#         FERRY_DURATION, FERRY_CLIENT (auto | ferry | curl), FERRY_JSON
#         (auto | jq | sed, for curl), FERRY_MAX_ATTEMPTS (default 3).
# Exports the variables `ferry exchange --format env` prints (AWS_ACCESS_KEY_ID,
#         AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION;
#         CLOUDSDK_AUTH_ACCESS_TOKEN, GOOGLE_OAUTH_ACCESS_TOKEN; GH_TOKEN; or
#         FERRY_TOKEN), with an env-prefix in front when one is given; an
#         aws-profile goes into a job-private AWS_CONFIG_FILE instead.
# Leaves what release at the job's end needs (ferry-release.sh, the
#         after_script) where `ferry exchange` leaves it: one 0600 file a
#         credential in ${TMPDIR:-/tmp}/ferry-release-UID/job-$CI_JOB_ID/.
# POSIX sh: it runs in bash, dash and busybox ash images alike.
ferry_credentials() {
  # Tracing (CI_DEBUG_TRACE, set -x) would print every credential: switch it
  # off while they are in variables, and back on after.
  case $- in *x*) set +x; ferry_xtrace=1 ;; *) ferry_xtrace= ;; esac
  ferry_credentials_run
  ferry_rc=$?
  ferry_clear
  if [ -n "$ferry_xtrace" ]; then set -x; fi
  return "$ferry_rc"
}

ferry_fail() {
  printf 'Ferry: %s\n' "$*" >&2
  return 1
}

# ferry_get NAME: the value of the shell variable NAME (names built here only).
ferry_get() {
  eval "printf '%s' \"\${$1:-}\""
}

# ferry_set NAME VALUE, without evaluating VALUE.
ferry_set() {
  eval "$1=\$2"
}

ferry_credentials_run() {
  [ -n "${FERRY_URL:-}" ] || { ferry_fail "FERRY_URL is not set: give the job the broker's URL, e.g. https://ferry.example.com"; return 1; }
  [ -n "${FERRY_ID_TOKEN:-}" ] || { ferry_fail "FERRY_ID_TOKEN is not set: add \`id_tokens: {FERRY_ID_TOKEN: {aud: ferry}}\` to the job (or extend .ferry-credentials)"; return 1; }
  case $FERRY_ID_TOKEN in *[!A-Za-z0-9._-]*) ferry_fail "FERRY_ID_TOKEN is not a JWT"; return 1 ;; esac
  ferry_check_url "$FERRY_URL" || return 1

  case ${FERRY_CLIENT:-auto} in
    auto) if command -v ferry >/dev/null 2>&1; then ferry_client=ferry; else ferry_client=curl; fi ;;
    ferry)
      command -v ferry >/dev/null 2>&1 || { ferry_fail "FERRY_CLIENT=ferry but no ferry binary is on PATH"; return 1; }
      ferry_client=ferry ;;
    curl) ferry_client=curl ;;
    *) ferry_fail "FERRY_CLIENT \"$FERRY_CLIENT\" is not auto, ferry or curl"; return 1 ;;
  esac
  if [ "$ferry_client" = curl ]; then
    command -v curl >/dev/null 2>&1 || { ferry_fail "neither the ferry CLI nor curl is in this image: install one (see actions/gitlab/README.md)"; return 1; }
    case ${FERRY_JSON:-auto} in
      auto) if command -v jq >/dev/null 2>&1; then ferry_json=jq; else ferry_json=sed; fi ;;
      jq)
        command -v jq >/dev/null 2>&1 || { ferry_fail "FERRY_JSON=jq but jq is not in this image"; return 1; }
        ferry_json=jq ;;
      sed) ferry_json=sed ;;
      *) ferry_fail "FERRY_JSON \"$FERRY_JSON\" is not auto, jq or sed"; return 1 ;;
    esac
  fi

  # Every check that can fail without the broker comes first: a list that
  # cannot be delivered must not spend the job's token.
  ferry_plan || return 1
  if [ -n "$ferry_profiles" ]; then ferry_aws_setup || return 1; fi

  ferry_i=1
  while [ "$ferry_i" -le "$ferry_n" ]; do
    ferry_obtain "$ferry_i" || return 1
    ferry_i=$((ferry_i + 1))
  done
  ferry_i=1
  while [ "$ferry_i" -le "$ferry_n" ]; do
    ferry_deliver "$ferry_i" || return 1
    ferry_i=$((ferry_i + 1))
  done
  # One policy with aws_profile: its profile is the job's default.
  if [ -z "${FERRY_POLICIES:-}" ] && [ -n "$ferry_profile_1" ]; then export AWS_PROFILE="$ferry_profile_1"; fi
  return 0
}

# The job's ID token must not travel in clear: https, or http to loopback
# only (a broker beside the job, as in tests).
ferry_check_url() {
  case $1 in *[!]A-Za-z0-9.:/_~%@[-]*) ferry_fail "FERRY_URL \"$1\" has characters a broker URL does not"; return 1 ;; esac
  case $1 in
    https://*) ferry_host=${1#https://} ;;
    http://*) ferry_host=${1#http://} ;;
    *) ferry_fail "FERRY_URL \"$1\" must start with https://"; return 1 ;;
  esac
  ferry_host=${ferry_host%%/*}
  case $ferry_host in *@*) ferry_fail "FERRY_URL must not carry credentials"; return 1 ;; esac
  case $1 in https://*) return 0 ;; esac
  case $ferry_host in
    localhost | localhost:* | 127.* | '[::1]' | '[::1]:'*) return 0 ;;
  esac
  ferry_fail "FERRY_URL must use https (plain http is allowed only to localhost): http://$ferry_host"
  return 1
}

# ferry_plan reads FERRY_POLICIES (or FERRY_POLICY and FERRY_AWS_PROFILE)
# into ferry_n entries ferry_policy_I, ferry_profile_I, ferry_prefix_I,
# ferry_duration_I, and refuses a list that would put two credentials into
# the same variables. The broker names a grant's kind only in its answer,
# so at most one entry may use the default variables.
ferry_plan() {
  ferry_n=0
  ferry_profiles=
  if [ -n "${FERRY_POLICIES:-}" ]; then
    [ -z "${FERRY_POLICY:-}" ] || { ferry_fail "give FERRY_POLICY or FERRY_POLICIES (policies), not both"; return 1; }
    [ -z "${FERRY_AWS_PROFILE:-}" ] || { ferry_fail "FERRY_AWS_PROFILE (aws_profile) is for a single policy; in FERRY_POLICIES give each line its own aws-profile=NAME"; return 1; }
    ferry_lineno=0
    while IFS= read -r ferry_line; do
      ferry_lineno=$((ferry_lineno + 1))
      ferry_parse_line "$ferry_line" "line $ferry_lineno of FERRY_POLICIES" || return 1
    done <<FERRY_POLICIES_END
$FERRY_POLICIES
FERRY_POLICIES_END
    [ "$ferry_n" -gt 0 ] || { ferry_fail "FERRY_POLICIES names no policy"; return 1; }
  elif [ -n "${FERRY_POLICY:-}" ]; then
    ferry_one="$FERRY_POLICY"
    if [ -n "${FERRY_AWS_PROFILE:-}" ]; then ferry_one="$ferry_one aws-profile=$FERRY_AWS_PROFILE"; fi
    ferry_parse_line "$ferry_one" "FERRY_POLICY" || return 1
  else
    ferry_fail "FERRY_POLICY is not set: name the trust policy to exchange the token under (or list several in FERRY_POLICIES)"
    return 1
  fi

  ferry_defaults=
  ferry_i=1
  while [ "$ferry_i" -le "$ferry_n" ]; do
    ferry_p=$(ferry_get "ferry_policy_$ferry_i")
    ferry_a=$(ferry_get "ferry_profile_$ferry_i")
    ferry_e=$(ferry_get "ferry_prefix_$ferry_i")
    if [ -z "$ferry_a" ] && [ -z "$ferry_e" ]; then ferry_defaults="$ferry_defaults \"$ferry_p\""; fi
    if [ -n "$ferry_a" ]; then ferry_profiles="$ferry_profiles $ferry_a"; fi
    ferry_j=1
    while [ "$ferry_j" -lt "$ferry_i" ]; do
      [ "$ferry_p" != "$(ferry_get "ferry_policy_$ferry_j")" ] || { ferry_fail "policy \"$ferry_p\" appears twice in FERRY_POLICIES: each credential needs its own line"; return 1; }
      [ -z "$ferry_a" ] || [ "$ferry_a" != "$(ferry_get "ferry_profile_$ferry_j")" ] || { ferry_fail "aws-profile \"$ferry_a\" appears twice in FERRY_POLICIES: each credential needs its own"; return 1; }
      [ -z "$ferry_e" ] || [ "$ferry_e" != "$(ferry_get "ferry_prefix_$ferry_j")" ] || { ferry_fail "env-prefix \"$ferry_e\" appears twice in FERRY_POLICIES: each credential needs its own"; return 1; }
      ferry_j=$((ferry_j + 1))
    done
    ferry_i=$((ferry_i + 1))
  done
  case $ferry_defaults in
    *'" "'*)
      ferry_fail "policies$ferry_defaults would all export into the same variables (AWS_ACCESS_KEY_ID…, CLOUDSDK_AUTH_ACCESS_TOKEN, FERRY_TOKEN), and the later would overwrite the earlier: give every one but one an aws-profile=NAME (aws grants) or an env-prefix=PREFIX_ (any grant)"
      return 1 ;;
  esac
  return 0
}

# ferry_parse_line LINE WHERE adds one entry.
ferry_parse_line() {
  ferry_line=${1%%#*}
  # Split on blanks without globbing, in this function's own arguments.
  case $- in *f*) ferry_noglob=1 ;; *) ferry_noglob= ;; esac
  set -f
  # shellcheck disable=SC2086
  set -- $ferry_line "$2"
  [ -n "$ferry_noglob" ] || set +f
  [ "$#" -gt 1 ] || return 0
  ferry_where=$(eval "printf '%s' \"\${$#}\"")
  ferry_p=$1
  shift
  case $ferry_p in '' | *[!A-Za-z0-9._-]*) ferry_fail "$ferry_where: \"$ferry_p\" is not a policy name (letters, digits, . _ -)"; return 1 ;; esac
  ferry_a= ferry_e= ferry_d=${FERRY_DURATION:-}
  while [ "$#" -gt 1 ]; do
    case $1 in
      aws-profile=?*) ferry_a=${1#aws-profile=} ;;
      env-prefix=?*) ferry_e=${1#env-prefix=} ;;
      duration=?*) ferry_d=${1#duration=} ;;
      aws-profile= | env-prefix= | duration=) ferry_fail "$ferry_where: $1 needs a value"; return 1 ;;
      *) ferry_fail "$ferry_where: unknown option \"${1%%=*}\" (want aws-profile=, env-prefix= or duration=)"; return 1 ;;
    esac
    shift
  done
  case $ferry_a in *[!A-Za-z0-9._-]*) ferry_fail "$ferry_where: aws-profile \"$ferry_a\" must be letters, digits, . _ -"; return 1 ;; esac
  case $ferry_e in
    '') ;;
    [A-Za-z_]*_) case $ferry_e in *[!A-Za-z0-9_]*) ferry_fail "$ferry_where: env-prefix \"$ferry_e\" must be a variable name ending in _"; return 1 ;; esac ;;
    *) ferry_fail "$ferry_where: env-prefix \"$ferry_e\" must be a variable name ending in _, e.g. ARTIFACTS_"; return 1 ;;
  esac
  case $ferry_d in *[!0-9a-z.]*) ferry_fail "$ferry_where: duration \"$ferry_d\" is not a duration such as 15m"; return 1 ;; esac
  if [ -n "$ferry_a" ] && [ -n "$ferry_e" ]; then ferry_fail "$ferry_where: give aws-profile or env-prefix, not both"; return 1; fi
  ferry_n=$((ferry_n + 1))
  ferry_set "ferry_policy_$ferry_n" "$ferry_p"
  ferry_set "ferry_profile_$ferry_n" "$ferry_a"
  ferry_set "ferry_prefix_$ferry_n" "$ferry_e"
  ferry_set "ferry_duration_$ferry_n" "$ferry_d"
}

# ferry_aws_setup points AWS_CONFIG_FILE at a config file in a directory
# only this user can enter, outside the project directory, once per job.
ferry_aws_setup() {
  if [ -z "${FERRY_AWS_DIR:-}" ] || [ ! -d "$FERRY_AWS_DIR" ]; then
    FERRY_AWS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ferry-${CI_JOB_ID:-job}.XXXXXX") || { ferry_fail "cannot create a private directory for the AWS config"; return 1; }
  fi
  chmod 700 "$FERRY_AWS_DIR" || return 1
  if [ -n "${AWS_CONFIG_FILE:-}" ] && [ "$AWS_CONFIG_FILE" != "$FERRY_AWS_DIR/config" ]; then
    printf 'Ferry: AWS_CONFIG_FILE now points at the job-private %s (was %s)\n' "$FERRY_AWS_DIR/config" "$AWS_CONFIG_FILE" >&2
  fi
  export FERRY_AWS_DIR AWS_CONFIG_FILE="$FERRY_AWS_DIR/config"
  [ -f "$AWS_CONFIG_FILE" ] || (umask 077 && : >"$AWS_CONFIG_FILE") || return 1
  # The SDKs read keys from the shared credentials file before a profile's
  # credential_process or config keys: such a profile would not be Ferry's.
  ferry_shared=${AWS_SHARED_CREDENTIALS_FILE:-${HOME:-/nonexistent}/.aws/credentials}
  for ferry_a in $ferry_profiles; do
    if [ -f "$ferry_shared" ] && grep -F -x "[$ferry_a]" "$ferry_shared" >/dev/null 2>&1; then
      ferry_fail "$ferry_shared defines profile $ferry_a, which the AWS SDKs read before AWS_CONFIG_FILE: pick another aws-profile name"
      return 1
    fi
  done
}

# ferry_obtain I exchanges entry I's token and keeps the answer in
# ferry_answer_I, delivering nothing yet.
ferry_obtain() {
  ferry_p=$(ferry_get "ferry_policy_$1")
  ferry_a=$(ferry_get "ferry_profile_$1")
  ferry_d=$(ferry_get "ferry_duration_$1")
  if [ "$ferry_client" = ferry ]; then
    if [ -n "$ferry_a" ]; then
      # The CLI caches the credential beside the profile and refreshes it
      # from the profile's credential_process, never with a spent token.
      if [ -n "$ferry_d" ]; then
        ferry exchange --url "$FERRY_URL" --policy "$ferry_p" --duration "$ferry_d" --aws-profile "$ferry_a" || return 1
      else
        ferry exchange --url "$FERRY_URL" --policy "$ferry_p" --aws-profile "$ferry_a" || return 1
      fi
      ferry_set "ferry_answer_$1" "profile"
      return 0
    fi
    if [ -n "$ferry_d" ]; then
      ferry_out=$(ferry exchange --url "$FERRY_URL" --policy "$ferry_p" --duration "$ferry_d" --format env) || return 1
    else
      ferry_out=$(ferry exchange --url "$FERRY_URL" --policy "$ferry_p" --format env) || return 1
    fi
    # Every value in it is single-quoted by the CLI; check the shape before
    # evaluating anything. (No grep -q: it may stop reading early, and under
    # pipefail printf's SIGPIPE would then turn a match into a miss.)
    if printf '%s\n' "$ferry_out" | grep -v "^export [A-Z_][A-Z0-9_]*='[^']*'\$" >/dev/null; then
      ferry_out=
      ferry_fail "ferry exchange printed something other than export lines; refusing to evaluate it"
      return 1
    fi
    ferry_set "ferry_answer_$1" "$ferry_out"
    ferry_out=
    return 0
  fi
  ferry_curl "$ferry_p" "$ferry_d" || return 1
  ferry_save_release "$ferry_p"
  ferry_set "ferry_answer_$1" "$ferry_body"
  ferry_body=
}

# ferry_save_release POLICY leaves what the after_script needs to release
# the credential in $ferry_body: the file `ferry exchange` would write (see
# ferry-release.sh). A failure only warns: the credential is the job's
# either way, and it expires by itself.
ferry_save_release() {
  ferry_rid=$(ferry_field request_id)
  ferry_rtok=$(ferry_field release_token)
  [ -n "$ferry_rtok" ] || return 0 # a broker from before release at job end
  ferry_rexp=$(ferry_field expires_at)
  ferry_rpres=
  # The credential itself only for the kind whose provider ends it only
  # when shown it (GitHub).
  if ferry_has github; then ferry_rpres=$(ferry_field github.token); fi
  ferry_why=
  case $ferry_rid in '' | *[!A-Za-z0-9_-]*) ferry_why="its request id cannot name a file" ;; esac
  case $ferry_rtok in *[!A-Za-z0-9_-]*) ferry_why="its release token has characters this script does not write" ;; esac
  case $ferry_rpres in *[!A-Za-z0-9_]*) ferry_why="its GitHub token has characters this script does not write" ;; esac
  case $ferry_rexp in *[!0-9A-Za-z:.+-]*) ferry_rexp= ;; esac
  if [ -z "$ferry_why" ]; then
    if [ -n "${RUNNER_TEMP:-}" ]; then
      ferry_rdir="${RUNNER_TEMP%/}/ferry-release"
    else
      case ${TMPDIR:-/tmp} in /*) ;; *) ferry_why="TMPDIR is not an absolute path" ;; esac
      ferry_rjob=local
      case ${CI_JOB_ID:-} in '' | *[!A-Za-z0-9_-]*) ;; *) ferry_rjob="job-$CI_JOB_ID" ;; esac
      ferry_rdir="${TMPDIR:-/tmp}"
      ferry_rdir="${ferry_rdir%/}/ferry-release-$(id -u)/$ferry_rjob"
    fi
    for ferry_ws in "${CI_PROJECT_DIR:-}" "${CI_BUILDS_DIR:-}"; do
      case $ferry_ws in '') continue ;; esac
      case $ferry_rdir/ in "${ferry_ws%/}"/*) ferry_why="$ferry_rdir is inside $ferry_ws, which artifacts and caches may upload; set TMPDIR outside it" ;; esac
    done
  fi
  if [ -z "$ferry_why" ]; then
    (umask 077 && mkdir -p "$ferry_rdir") 2>/dev/null || ferry_why="cannot create $ferry_rdir"
  fi
  if [ -z "$ferry_why" ]; then
    ferry_ls=$(ls -ldn "$ferry_rdir" 2>/dev/null)
    case $ferry_ls in d???------*) ;; *) ferry_why="$ferry_rdir is open to other users or not a directory" ;; esac
    if [ -L "$ferry_rdir" ] || [ "$(printf '%s\n' "$ferry_ls" | awk '{print $3}')" != "$(id -u)" ]; then
      ferry_why="$ferry_rdir is a symlink or another user's"
    fi
  fi
  if [ -z "$ferry_why" ]; then
    ferry_rtmp=$(mktemp "$ferry_rdir/.pending-XXXXXX" 2>/dev/null) || ferry_why="cannot write into $ferry_rdir"
  fi
  if [ -z "$ferry_why" ]; then
    # Written whole, then renamed into place: the after_script never reads
    # half a file. Every value was checked against a character set that
    # needs no JSON escaping.
    if {
      printf '{"version":1,"url":"%s","policy":"%s","request_id":"%s","release_token":"%s"' "$FERRY_URL" "$1" "$ferry_rid" "$ferry_rtok"
      if [ -n "$ferry_rexp" ]; then printf ',"expires_at":"%s"' "$ferry_rexp"; fi
      if [ -n "$ferry_rpres" ]; then printf ',"token":"%s"' "$ferry_rpres"; fi
      printf '}\n'
    } >"$ferry_rtmp" && chmod 600 "$ferry_rtmp" && mv "$ferry_rtmp" "$ferry_rdir/$ferry_rid.json"; then
      :
    else
      rm -f "$ferry_rtmp"
      ferry_why="cannot write into $ferry_rdir"
    fi
  fi
  ferry_rtok= ferry_rpres=
  if [ -n "$ferry_why" ]; then
    printf 'Ferry: warning: the after_script will not find request %s to release it: %s\n' "${ferry_rid:-?}" "$ferry_why" >&2
  fi
  return 0
}

# ferry_has KEY: the answer in $ferry_body has a top-level object KEY. (A
# JSON string cannot hold "KEY": with its quotes unescaped, so the sed
# reading cannot be fooled by a value.)
ferry_has() {
  if [ "$ferry_json" = jq ]; then
    printf '%s' "$ferry_body" | jq -e ".$1 | type == \"object\"" >/dev/null 2>&1
    return
  fi
  printf '%s' "$ferry_body" | grep "\"$1\"[[:space:]]*:[[:space:]]*{" >/dev/null
}

# ferry_deliver I exports entry I's credential, or writes its profile.
ferry_deliver() {
  ferry_p=$(ferry_get "ferry_policy_$1")
  ferry_a=$(ferry_get "ferry_profile_$1")
  ferry_e=$(ferry_get "ferry_prefix_$1")
  ferry_body=$(ferry_get "ferry_answer_$1")
  ferry_set "ferry_answer_$1" ""
  if [ "$ferry_client" = ferry ]; then
    if [ -n "$ferry_a" ]; then
      ferry_body= # ferry exchange --aws-profile has said what it wrote
      return 0
    fi
    ferry_names=$(printf '%s\n' "$ferry_body" | sed -n "s/^export \\([A-Z_][A-Z0-9_]*\\)=.*/$ferry_e\\1/p" | tr '\n' ' ')
    eval "$(printf '%s\n' "$ferry_body" | sed "s/^export /export $ferry_e/")"
    ferry_body=
    printf 'Ferry: policy "%s" granted; exported %s(ferry exchange)\n' "$ferry_p" "$ferry_names"
    return 0
  fi

  ferry_expires=$(ferry_field expires_at)
  ferry_request=$(ferry_field request_id)
  ferry_v1=$(ferry_field aws.access_key_id)
  if [ -n "$ferry_v1" ]; then
    ferry_v2=$(ferry_field aws.secret_access_key)
    ferry_v3=$(ferry_field aws.session_token)
    ferry_v4=$(ferry_field aws.expiration)
    if [ -z "$ferry_v2" ] || [ -z "$ferry_v3" ]; then ferry_fail "the broker's aws answer lacks a secret key or session token"; return 1; fi
    if [ -n "$ferry_a" ]; then
      ferry_write_profile "$ferry_a" "$ferry_p" || return 1
      ferry_names="profile $ferry_a (AWS_CONFIG_FILE)"
    else
      export "${ferry_e}AWS_ACCESS_KEY_ID=$ferry_v1" "${ferry_e}AWS_SECRET_ACCESS_KEY=$ferry_v2" \
        "${ferry_e}AWS_SESSION_TOKEN=$ferry_v3" "${ferry_e}AWS_CREDENTIAL_EXPIRATION=$ferry_v4"
      ferry_names="${ferry_e}AWS_ACCESS_KEY_ID ${ferry_e}AWS_SECRET_ACCESS_KEY ${ferry_e}AWS_SESSION_TOKEN ${ferry_e}AWS_CREDENTIAL_EXPIRATION"
    fi
  else
    [ -z "$ferry_a" ] || { ferry_fail "policy \"$ferry_p\" granted no aws credential; aws-profile is for aws grants only (use env-prefix)"; return 1; }
    ferry_v1=$(ferry_field gcp.access_token)
    if [ -n "$ferry_v1" ]; then
      export "${ferry_e}CLOUDSDK_AUTH_ACCESS_TOKEN=$ferry_v1" "${ferry_e}GOOGLE_OAUTH_ACCESS_TOKEN=$ferry_v1"
      ferry_names="${ferry_e}CLOUDSDK_AUTH_ACCESS_TOKEN ${ferry_e}GOOGLE_OAUTH_ACCESS_TOKEN"
    elif ferry_has github; then
      # Before token: without jq, token.token would also read github's.
      ferry_v1=$(ferry_field github.token)
      [ -n "$ferry_v1" ] || { ferry_fail "the broker's github answer lacks its token"; return 1; }
      export "${ferry_e}GH_TOKEN=$ferry_v1"
      ferry_names="${ferry_e}GH_TOKEN"
    else
      ferry_v1=$(ferry_field token.token)
      [ -n "$ferry_v1" ] || { ferry_fail "the broker answered 200 without a credential this script knows"; return 1; }
      export "${ferry_e}FERRY_TOKEN=$ferry_v1"
      ferry_names="${ferry_e}FERRY_TOKEN"
    fi
  fi
  printf 'Ferry: policy "%s" granted; exported %s, valid until %s (request %s, job %s, curl+%s)\n' \
    "$ferry_p" "$ferry_names" "$ferry_expires" "$ferry_request" "${CI_JOB_ID:-?}" "$ferry_json"
}

# ferry_write_profile NAME POLICY writes the credential in ferry_v1..4 as a
# profile of the job-private AWS config file. curl cannot refresh it (the
# job's token is spent), so the keys go in the profile itself.
ferry_write_profile() {
  case $ferry_v1$ferry_v2$ferry_v3 in *[!A-Za-z0-9+/=]*) ferry_fail "the broker's aws answer has characters an AWS config file cannot hold"; return 1 ;; esac
  ferry_cfg="$AWS_CONFIG_FILE"
  if [ "$1" = default ]; then ferry_title='[default]'; else ferry_title="[profile $1]"; fi
  # Drop an earlier section of the same name that Ferry wrote in this job.
  (umask 077 && awk -v t="$ferry_title" '
    /^\[/ { skip = ($0 == t) }
    !skip { print }' "$ferry_cfg" >"$ferry_cfg.tmp") || return 1
  {
    printf '%s\n# ferry: policy %s\n' "$ferry_title" "$2"
    printf 'aws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' "$ferry_v1" "$ferry_v2" "$ferry_v3"
  } >>"$ferry_cfg.tmp" || return 1
  mv "$ferry_cfg.tmp" "$ferry_cfg"
}

# ferry_field PATH: a string field of the answer in $ferry_body, e.g.
# aws.session_token. With jq, exactly that field; without, the first string
# value of its last key anywhere, taken only when it has no escapes
# (credentials never do, and a value that does cannot be mistaken for one).
ferry_field() {
  if [ "$ferry_json" = jq ]; then
    printf '%s' "$ferry_body" | jq -r ".$1 | strings" 2>/dev/null | head -n 1
    return 0
  fi
  printf '%s' "$ferry_body" | sed -n "s/^.*\"${1##*.}\"[[:space:]]*:[[:space:]]*\"\\([^\"\\\\]*\\)\".*\$/\\1/p" | head -n 1
}

# ferry_text KEY: a top-level string that may hold escapes (the broker's
# error_description quotes claim values), unescaped for reading. Without
# jq, escaped quotes and backslashes are swapped for placeholders first so
# that the value ends at the first real quote (POSIX sed has no alternation).
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

# ferry_curl POLICY DURATION: one exchange with plain curl, retrying 429
# and 503 (honouring Retry-After) and network errors; the answer is left in
# ferry_body. The token goes to curl on stdin, never on its command line,
# where other processes could read it.
ferry_curl() {
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
      if [ -n "$2" ]; then
        printf '{"policy":"%s","token":"%s","duration":"%s"}' "$1" "$FERRY_ID_TOKEN" "$2"
      else
        printf '{"policy":"%s","token":"%s"}' "$1" "$FERRY_ID_TOKEN"
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
      ferry_code=$(ferry_field error)
      if [ -n "$ferry_code" ]; then
        ferry_why="$ferry_code: $(ferry_text error_description) (HTTP $ferry_status, request_id $(ferry_field request_id))"
      else
        ferry_why="the broker answered HTTP $ferry_status without a Ferry error body (a proxy in the way?)"
      fi
      ferry_body=
      case $ferry_status in
        429 | 503) ferry_wait=$(sed -n 's/^[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$ferry_headers" | head -n 1) ;;
        *) rm -f "$ferry_headers"; ferry_fail "policy \"$1\": $ferry_why"; return 1 ;;
      esac
    fi
    if [ "$ferry_attempt" -ge "$ferry_max" ]; then
      rm -f "$ferry_headers"
      ferry_fail "policy \"$1\": $ferry_why"
      return 1
    fi
    # Back off as asked, or 1s, 2s, 4s…; a broker that asks for more than
    # 30s is overloaded for longer than a job should sit idle.
    [ -n "$ferry_wait" ] || ferry_wait=$((1 << (ferry_attempt - 1)))
    if [ "$ferry_wait" -gt 30 ]; then
      rm -f "$ferry_headers"
      ferry_fail "policy \"$1\": $ferry_why; the broker asks to retry after ${ferry_wait}s, longer than this job waits (30s)"
      return 1
    fi
    ferry_attempt=$((ferry_attempt + 1))
    printf 'Ferry: %s; retrying in %ss (attempt %s of %s)\n' "$ferry_why" "$ferry_wait" "$ferry_attempt" "$ferry_max" >&2
    sleep "$ferry_wait"
  done
  rm -f "$ferry_headers"
  if [ "$ferry_json" = jq ] && ! printf '%s' "$ferry_body" | jq -e 'type == "object"' >/dev/null 2>&1; then
    ferry_body=
    ferry_fail "policy \"$1\": the broker answered 200 with a body that is not a JSON object"
    return 1
  fi
  return 0
}

# ferry_clear forgets every credential held in a variable of the script's
# own: the exported ones are the job's now, nothing else keeps a copy.
ferry_clear() {
  ferry_body= ferry_out= ferry_resp= ferry_v1= ferry_v2= ferry_v3= ferry_v4= ferry_rtok= ferry_rpres=
  ferry_i=1
  while [ "$ferry_i" -le "${ferry_n:-0}" ]; do
    ferry_set "ferry_answer_$ferry_i" ""
    ferry_i=$((ferry_i + 1))
  done
}

ferry_credentials || exit $?

#!/bin/sh
# Start redis-server with moodstream's ACL users; arguments go to redis-server.
#
# Each ACL_RULES_DIR/<user>.rules (the ConfigMap moodstream-redis-acl) holds one
# user's rules, lines starting with # being comments; its password is the file
# REDIS_SECRETS_DIR/<user> (the Secret moodstream-redis mounted as files), so no
# password is in an environment variable or on a command line (`ps` shows those).
# The ACL file is written to ACL_FILE (in the pod: an in-memory emptyDir),
# readable by this user only. Placeholder, missing or non-URL-safe passwords
# and a missing default user stop the start with a message instead.
#
# Not --requirepass: the ACL file already gives the default user its password,
# redis-server lets --requirepass override it (seen on 7.0.15), and it would put
# the password into the process's arguments.
# The same script starts the server of tests/integration/test_acl.py.
set -eu
rules_dir=${ACL_RULES_DIR:-/etc/moodstream/redis-acl}
secrets_dir=${REDIS_SECRETS_DIR:-/run/secrets/moodstream-redis}
acl_file=${ACL_FILE:-/run/redis-acl/users.acl}

fail() { echo "start-redis: $*" >&2; exit 1; }

umask 077
tmp="$acl_file.tmp"
: > "$tmp"
for rules in "$rules_dir"/*.rules; do
  [ -f "$rules" ] || fail "no <user>.rules files in $rules_dir"
  user=$(basename "$rules" .rules)
  [ -s "$secrets_dir/$user" ] || fail "no password for ACL user $user: add the key '$user' to the Secret"
  pw=$(cat "$secrets_dir/$user")
  case "$pw" in
    *CHANGE_ME*) fail "the password of $user is still the placeholder: set real ones in the Secret (deploy/README.md)" ;;
    *[!A-Za-z0-9._~-]*) fail "the password of $user must be URL-safe, [A-Za-z0-9._~-] (e.g. openssl rand -hex 32)" ;;
  esac
  printf 'user %s reset on >%s %s\n' "$user" "$pw" "$(grep -v '^[[:space:]]*#' "$rules" | tr '\n' ' ')" >> "$tmp"
done
grep -q '^user default ' "$tmp" || fail "$rules_dir has no default.rules: the default user would have no password"
mv "$tmp" "$acl_file"
exec "${REDIS_SERVER:-redis-server}" "$@" --aclfile "$acl_file"

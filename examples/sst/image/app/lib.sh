# Shared by the stand-in plugins. Cloud Compute conventions: the payload is at
# $FSB_ROOT_PATH/$CC_PAYLOAD_ID/payload; outputs go under $FSB_ROOT_PATH/<outputroot>/;
# logs are "ISO time - LEVEL - source - message" on stderr; exit 0 = success, 1 = failure.
set -eu
payload="$FSB_ROOT_PATH/$CC_PAYLOAD_ID/payload"
# jget KEY FILE: a scalar from a flat JSON object (enough for these payloads and configs)
jget() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$2" | head -n 1; }
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) - $1 - $CC_PAYLOAD_ID - $2" >&2; }
[ -f "$payload" ] || { log ERROR "no payload at $payload"; exit 1; }
root="$FSB_ROOT_PATH/$(jget outputroot "$payload")"
mkdir -p "$root"

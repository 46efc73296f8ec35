#!/usr/bin/env bash
# The image's HEALTHCHECK: healthy while the metrics server of CAPFILT_METRICS_ADDR answers
# GET /healthz with 200 (that server is what `capfilt worker --metrics-addr` runs). A
# container with no metrics address (submit, train, ...) serves nothing to ask and counts
# as healthy. Plain bash (/dev/tcp), so neither image needs curl.
set -uo pipefail

addr=${CAPFILT_METRICS_ADDR:-}
if [[ -z $addr ]]; then
  exit 0
fi
host=${addr%:*}
port=${addr##*:}
# An address to listen on ("", 0.0.0.0, [::]) is reached through loopback.
case $host in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
host=${host#[}
host=${host%]}
if [[ ! $port =~ ^[0-9]+$ ]]; then
  echo "capfilt-healthcheck: CAPFILT_METRICS_ADDR=$addr has no port" >&2
  exit 1
fi

if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "capfilt-healthcheck: nothing listens on $host:$port" >&2
  exit 1
fi
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
status=""
IFS= read -r -t 5 status <&3 || true
exec 3>&-
if [[ $status =~ ^HTTP/[0-9.]+\ 200 ]]; then
  exit 0
fi
echo "capfilt-healthcheck: GET http://$host:$port/healthz answered '${status%$'\r'}'" >&2
exit 1

#!/bin/bash
# Docker HEALTHCHECK for Conflux: `GET /health` on the admin endpoint, exit 0
# on a 200. Bash's /dev/tcp does the request, so the image needs no curl (and
# none of the libraries curl pulls in). Plain HTTP only: with `[admin] tls`
# set, use a probe that speaks TLS.
#
#   conflux-healthcheck [HOST [PORT [PATH]]]    # default 127.0.0.1 9599 /health
set -eu
host=${1:-127.0.0.1}
port=${2:-9599}
path=${3:-/health}
# A refused connection fails this redirection, which ends the script (exit 1).
exec 3<>"/dev/tcp/$host/$port"
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
status=
IFS=' ' read -r -t 5 _ status _ <&3 || true
exec 3<&-
if [ "$status" != 200 ]; then
    echo "GET http://$host:$port$path: ${status:-no answer}" >&2
    exit 1
fi

#!/usr/bin/env bash
# Builds bench/centrifuge/centrifuge-server offline in GOPATH mode against the
# Go sources that Debian's golang-* packages install under /usr/share/gocode.
# Needs: apt-get install golang-go golang-github-centrifugal-centrifuge-dev \
#   golang-github-centrifugal-protocol-dev golang-github-igm-sockjs-go-dev \
#   golang-github-mna-redisc-dev golang-github-fzambia-eagle-dev
set -euo pipefail
cd "$(dirname "$0")"
export GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off
go build -o centrifuge-server .
echo "built $(pwd)/centrifuge-server"

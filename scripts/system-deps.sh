#!/usr/bin/env bash
# Install and start what the full test suite needs beyond Python packages, on Debian/Ubuntu:
# the Docker engine, a local base image (no registry needed), Chromium (browser tests), Java (Spark), wrk (bench),
# docker-registry (the Distribution registry the push tests start on a loopback port).
# Writes the PIDs of services it started to .pyml-services (scripts/stop-services.sh stops them).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v java >/dev/null || need+=(default-jre-headless)
command -v wrk >/dev/null || need+=(wrk)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_ apt-get update -q
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -q "${need[@]}"
fi

: > .pyml-services
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  sudo_ sh -c 'dockerd >/tmp/pyml-dockerd.log 2>&1 & echo $! > /tmp/pyml-dockerd.pid'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/pyml-dockerd.log; exit 1; }
  echo "dockerd $(cat /tmp/pyml-dockerd.pid)" >> .pyml-services
fi

# The default base image is the official python:X.Y-slim for this Python; without a registry, make a stand-in.
py_mm="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if ! docker image inspect "python:${py_mm}-slim" >/dev/null 2>&1; then
  docker pull -q "python:${py_mm}-slim" 2>/dev/null || bash scripts/base-image.sh "python:${py_mm}-slim"
fi

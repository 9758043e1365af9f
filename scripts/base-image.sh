#!/usr/bin/env bash
# Provide a local stand-in for the official `python:X.Y-slim` image where no container registry can be
# reached: a minimal Debian root filesystem made with debootstrap, imported into the engine, plus a thin
# layer that gives it what the official image has (a `python` command and a pip that installs packages).
# Usage: .ci/base-image.sh [TAG]   (default python:3.11-slim; Debian bookworm ships Python 3.11)
set -euo pipefail
tag="${1:-python:3.11-slim}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"; exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import - pyml-local/debian-python:bookworm >/dev/null
cat >"$work/Dockerfile" <<'DOCKERFILE'
FROM pyml-local/debian-python:bookworm
RUN python3 -m venv /usr/local/python && ln -s /usr/local/python/bin/python /usr/local/bin/python
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
docker build -q -t "$tag" "$work" >/dev/null
echo "base image $tag built locally"

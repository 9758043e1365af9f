#!/usr/bin/env bash
# Stop the services scripts/system-deps.sh started (and only those).
cd "$(dirname "$0")/.."
[ -f .pyml-services ] || exit 0
while read -r name pid; do
  [ -n "${pid:-}" ] || continue
  echo "stopping $name ($pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
done < .pyml-services
rm -f .pyml-services

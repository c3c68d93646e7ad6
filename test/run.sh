#!/usr/bin/env bash
# The test command: sets the machine up (idempotent), then runs every test
# with node's test runner. Tests that need root and network namespaces run
# as root (CI is root); as non-root they skip and say so.
#   npm test                       # everything
#   npm test -- test/unit          # a folder or files
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${WEIR_SKIP_SETUP:-0}" = 1 ] || bash test/setup.sh

if [ "$#" -gt 0 ]; then
  mapfile -t files < <(find "$@" -name '*.test.ts' | sort)
else
  mapfile -t files < <(find test -name '*.test.ts' | sort)
fi
[ "${#files[@]}" -gt 0 ] || { echo "no test files found" >&2; exit 1; }
# A test process that never exits (a leaked handle) must fail the run, not hang CI;
# a test that waits forever fails after 10 min instead of eating the whole run.
exec timeout --kill-after=30 "${WEIR_TEST_TIMEOUT:-3000}" node --import tsx --test --test-concurrency="${WEIR_TEST_CONCURRENCY:-1}" --test-timeout="${WEIR_TEST_TIMEOUT_EACH:-600000}" --test-reporter=spec "${files[@]}"

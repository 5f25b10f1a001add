#!/bin/sh
# A stand-in for a real build: "compiles" a component and "runs" its tests in about a second.
# Usage: component.sh NAME TESTS [FAILURES]
set -eu
name=$1 tests=$2 failures=${3:-0}
echo "==> building $name (run #${CHATRUN_RUN_ID:-?} of ${CHATRUN_JOB:-?}, asked by ${CHATRUN_USER:-?})"
sleep 0.3
echo "==> testing $name: $tests tests"
sleep 0.3
if [ "$failures" -gt 0 ]; then
    i=1
    while [ "$i" -le "$failures" ]; do
        echo "FAILED $name::test_case_$i - assertion failed: expected 200, got 500" >&2
        i=$((i + 1))
    done
    echo "$name: $((tests - failures)) passed, $failures failed"
    exit 1
fi
echo "$name: $tests passed, 0 failed"

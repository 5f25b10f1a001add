#!/bin/sh
# A stand-in for a real build: "compiles" a component, "runs" its tests in about a second and
# writes a JUnit XML report to reports/RUN_ID/NAME.xml, as pytest, nextest or jest-junit would.
# Usage: component.sh NAME TESTS [FAILURES]
set -eu
name=$1 tests=$2 failures=${3:-0}
report_dir="reports/${CHATRUN_RUN_ID:-local}"
mkdir -p "$report_dir"
# Keep the reports of the 20 most recent runs; older ones would pile up in jobs/reports forever.
ls -1t reports | tail -n +21 | while read -r old; do rm -rf "reports/$old"; done
report="$report_dir/$name.xml"

echo "==> building $name from ${CHATRUN_PARAM_BRANCH:-main} (run #${CHATRUN_RUN_ID:-?} of ${CHATRUN_JOB:-?}, asked by ${CHATRUN_USER:-?})"
sleep 0.3
echo "==> testing $name: $tests tests"
sleep 0.3

{
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo "<testsuites><testsuite name=\"$name\" tests=\"$tests\" failures=\"$failures\">"
    i=1
    while [ "$i" -le "$tests" ]; do
        if [ "$i" -le "$failures" ]; then
            echo "<testcase classname=\"$name.api\" name=\"test_case_$i\" time=\"0.002\"><failure message=\"assertion failed: expected 200, got 500&#10;at $name/api.rs:$((i * 10))\">expected 200, got 500</failure></testcase>"
        else
            echo "<testcase classname=\"$name.api\" name=\"test_case_$i\" time=\"0.001\"/>"
        fi
        i=$((i + 1))
    done
    echo "</testsuite></testsuites>"
} > "$report"

if [ "$failures" -gt 0 ]; then
    i=1
    while [ "$i" -le "$failures" ]; do
        echo "FAILED $name.api::test_case_$i - assertion failed: expected 200, got 500" >&2
        i=$((i + 1))
    done
    echo "$name: $((tests - failures)) passed, $failures failed"
    exit 1
fi
echo "$name: $tests passed, 0 failed"

#!/usr/bin/env bash
# Runs the benchmarks of issue #8 and writes BENCHMARKS.md with the machine, the date, the
# command and the figures. Each figure is printed next to its baseline measured in the same run,
# so a noisy machine shifts both.
#
#   bench/run.sh                 all parts: load, dispatch, output, history, tests, startup,
#                                micro, postgres (skipped without the Postgres binaries), agents
#   bench/run.sh load history    only those parts
#
# Environment: LOAD_DURATION (seconds per load measurement, default 10), LOAD_CONNECTIONS
# (default 32), LOAD_RATE (default 500), LOAD_ROUNDS (rounds of each load comparison, default
# 3), RUNS (history rows, default 1000000), TEST_RUNS (runs of the test-history part, default
# 10000), DISPATCH_RUNS
# (figure 3, default 200), OVERHEAD_RUNS (figure 4, default 1000), AGENT_RUNS (runs drained
# by agents, default 400), IDLE_AGENTS (default 200), OVERHEAD_CONNECTIONS
# (default 4), CHATRUN_BIN (the chatrun binary under test), CARGO_TARGET_DIR (as cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(load dispatch output history tests startup micro postgres agents)
wants() { [[ " ${parts[*]} " == *" $1 "* ]]; }

command_line="bench/run.sh${*:+ $*}"
for var in LOAD_DURATION LOAD_CONNECTIONS LOAD_RATE LOAD_ROUNDS RUNS TEST_RUNS DISPATCH_RUNS OVERHEAD_RUNS \
    AGENT_RUNS IDLE_AGENTS \
    OVERHEAD_CONNECTIONS CHATRUN_BIN; do
    [ -n "${!var:-}" ] && command_line="$var=${!var} $command_line"
done

# adnanh/webhook is the second baseline of the load figures.
if ! command -v webhook >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y webhook >/dev/null
    else
        echo "webhook is not installed (apt-get install webhook as root); the load bench skips it" >&2
    fi
fi

# `cargo bench` builds the release chatrun binary the load bench starts (CARGO_BIN_EXE_chatrun);
# CHATRUN_BIN points it at another one.

sections=$(mktemp -d)
trap 'rm -rf "$sections"' EXIT

# The machine's CPU ticks: stolen (by the hypervisor, for other guests) and in all.
cpu_ticks() {
    awk '/^cpu / { total = 0; for (i = 2; i <= NF; i++) total += $i; print $9, total }' \
        /proc/stat 2>/dev/null || echo "0 0"
}

# stolen_share "BEFORE" "AFTER" (two cpu_ticks): the share of CPU time stolen in between.
stolen_share() {
    echo "$1 $2" | awk '{ d = $4 - $2; printf "%.0f%%", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

# section PART TITLE INTRO FENCE COMMAND...: when PART is wanted, writes "## TITLE", INTRO
# (none when empty), what COMMAND prints (in a code block when FENCE is "fenced") and the
# share of CPU time the hypervisor gave other guests meanwhile, as that part's section of
# BENCHMARKS.md.
section() {
    local part=$1 title=$2 intro=$3 fence=$4 before
    shift 4
    wants "$part" || return 0
    echo "== $part: $title" >&2
    # What the last part wrote (the history part's million runs) is written back now, not
    # during this part's syncs.
    sync
    before=$(cpu_ticks)
    {
        echo "## $title"
        echo
        if [ -n "$intro" ]; then
            echo "$intro"
            echo
        fi
        [ "$fence" = fenced ] && echo '```'
        "$@"
        [ "$fence" = fenced ] && echo '```'
        echo
        echo "CPU time stolen by the hypervisor during this part: $(stolen_share "$before" "$(cpu_ticks)")."
        echo
    } >"$sections/$part.md"
}

# criterion's result lines; a long name is on the line before its figures.
micro_results() {
    cargo bench --quiet --bench micro 2>&1 |
        awk '/^Benchmarking/ { next } /time:/ { if ($0 ~ /^ /) print name $0; else print; next } { name = $0 }'
}

# Dispatch runs first: the load part makes and then deletes tens of thousands of log files, and for
# minutes after that, ext4 makes a new file slowly (it skips the inodes freed recently), which
# every run of figures 3 and 4 would pay.
section dispatch "Dispatch latency and runner overhead (figures 3 and 4)" \
'`cargo bench --bench dispatch` (benches/dispatch.rs): Mattermost triggers over
loopback HTTP/1.1 to the release chatrun (2 workers). Figure 3 sends one trigger at
a time to a job whose step is `date +%s%N` and compares the time it printed with
the send and the ack; figure 4 runs a one-step job running `true` end to end, next
to plain loops spawning `true`, all in the same run.' \
    plain cargo bench --quiet --bench dispatch

section load "Acknowledged triggers and ack latency (figures 1 and 2)" \
'`cargo bench --bench load` (benches/load.rs): keep-alive HTTP/1.1 connections over
loopback, every request a distinct trigger with a fresh timestamp and its own token
or HMAC. ack/s counts 2xx answers; latency is from the send (closed loop) or from
the scheduled send time (steady rate, so stalls are not hidden). Each table is
measured in rounds, each round the three servers in turn: a figure is the median
over the rounds, a ratio the median of the rounds'"'"' ratios.' \
    plain cargo bench --quiet --bench load

section output "Output capture (figure 5)" "" \
    fenced cargo bench --quiet --bench output

section history "History pages with ${RUNS:-1000000} runs (figure 6)" "" \
    fenced cargo bench --quiet --bench history

section tests "Test history: classing 500 failed tests against ${TEST_RUNS:-10000} runs (issue #24)" \
'`cargo bench --bench history -- tests` (benches/history.rs): one job with
TEST_RUNS (10,000) finished runs on SQLite, a third of them with 300 failed tests (about
a million rows); a new run fails 500 tests. Writing its step (each failure finds its
streak in the previous run) beside the same write for a job without history, and
reading its failures classed (new / still failing / flaky over the last 10 runs)
beside reading them bare.' \
    fenced cargo bench --quiet --bench history -- tests

section startup "Start-up and idle memory (figure 7)" \
'`cargo bench --bench startup` (benches/startup.rs): spawn `chatrun serve` to its
first 200 on `/healthz`, and its resident memory after 2 s idle, with an empty and
with a large database; baseline: `chatrun --version`.' \
    fenced cargo bench --quiet --bench startup

# Postgres (issue #21): a cluster the benches start from the local binaries, syncing its commits.
postgres_figures() {
    if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "Skipped: no Postgres binaries (apt-get install postgresql)."
        return
    fi
    cargo bench --quiet --bench load -- postgres
    cargo bench --quiet --bench dispatch -- postgres
}

section postgres "Postgres and several instances (issue #21)" \
'`cargo bench --bench load -- postgres` (benches/load.rs) and `cargo bench --bench
dispatch -- postgres` (benches/dispatch.rs): chatrun on a Postgres cluster the bench
starts on this machine from the local binaries (`tests/support/postgres.rs`, with
`fsync` and `synchronous_commit` on, as Postgres ships), next to chatrun on SQLite,
and two instances sharing the database next to one. On 2 cores the two instances and
Postgres share the same cores as the load generator: the second instance shows the
overhead of sharing, not scaling.' \
    plain postgres_figures

section agents "Build agents (issue #22)" \
'`cargo bench --bench dispatch -- agents` (benches/dispatch.rs): the release chatrun
as the server and `chatrun agent` processes with the label `bench`, over loopback
HTTP: trigger → step started on a remote agent beside the local agent (one trigger
at a time), runs of `true` drained from a full queue by 1, 2 and 4 agents, and a
server with 200 idle agents long-polling it.' \
    plain cargo bench --quiet --bench dispatch -- agents

section micro "Hot pure functions (criterion)" \
'`cargo bench --bench micro` (benches/micro.rs): what each trigger costs before its
run is stored, and what each result costs to render.' \
    fenced micro_results

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
memory=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`bench/run.sh\`; run it again to refresh this file. Targets are in issue #8."
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) cores, $cpu, $memory memory, $(uname -sr)"
    echo "- Toolchain: $(rustc --version); webhook: $(webhook -version 2>/dev/null || echo 'not installed')"
    echo "- Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet -- . ':!BENCHMARKS.md' 2>/dev/null || echo ' (with local changes)')"
    echo "- Command: \`$command_line\`"
    echo
    echo "The load generator, the servers and anything else on the machine share the same cores;"
    echo "compare a figure with the baseline in the same table, not with another run's. Each part"
    echo "ends with the share of CPU time the hypervisor gave to other guests meanwhile (steal):"
    echo "the higher, the noisier that part's figures."
    echo
    # In the order of the figures, whatever order they ran in.
    for part in load dispatch output history tests startup postgres agents micro; do
        [ -f "$sections/$part.md" ] && cat "$sections/$part.md"
    done
} >BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2

#!/usr/bin/env bash
# Alternating drives of two chatrun binaries, one at a time, for figures that three rounds of
# bench/run.sh cannot settle: figure 1 (closed loop, 32 connections, Teams and Mattermost) and
# figure 2 with two CPU-bound runs (Mattermost at 500/s). Each drive is a fresh chatrun with
# the load bench's configuration, 10 s after a 2 s warm-up.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]        (default 3 rounds)
#
# Prints one line per drive: ack/s | p50 ms | p99 ms. Needs `cargo bench --no-run` first (the
# load generator is benches/load.rs in manual mode).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1") new=$(realpath "$2") rounds=${3:-3}
token=$(grep -oP 'pub const TOKEN: &str = "\K[^"]+' benches/common/mod.rs)
secret=$(grep -oP 'const TEAMS_SECRET: &str = "\K[^"]+' benches/load.rs)
load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)

drive() { # binary port platform rate(or "") burn(yes/no)
    local bin=$1 port=$2 platform=$3 rate=$4 burn=$5 dir pid connections=32
    # At a steady rate few connections are busy at once (as in the load bench).
    if [ -n "$rate" ]; then connections=16; fi
    dir=$(mktemp -d)
    mkdir "$dir/jobs"
    printf 'description = "x"\ntimeout = "1m"\nconcurrency = 4\nqueue_limit = 0\n[[steps]]\nname = "run"\nrun = ["true"]\n' >"$dir/jobs/build.toml"
    printf 'description = "x"\ntimeout = "5m"\nconcurrency = 2\nqueue_limit = 0\n[[steps]]\nname = "spin"\nrun = ["sh", "-c", "while :; do :; done"]\n' >"$dir/jobs/burn.toml"
    printf 'listen = "127.0.0.1:%s"\ndatabase_url = "sqlite://%s/chatrun.db"\njobs_dir = "%s/jobs"\ndata_dir = "%s/data"\nrate_limit_per_minute = 0\nworkers = 4\nkill_grace_secs = 1\nshutdown_grace_secs = 1\n[mattermost]\ntokens = ["%s"]\n[[teams.webhooks]]\nname = "load"\nsecret = "%s"\n' \
        "$port" "$dir" "$dir" "$dir" "$token" "$secret" >"$dir/chatrun.toml"
    (cd "$dir" && exec env -u CHATRUN_BIN "$bin" serve --config chatrun.toml >"$dir/log" 2>&1) &
    pid=$!
    for _ in $(seq 100); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    if [ "$burn" = yes ]; then
        for n in 1 2; do
            curl -fs -o /dev/null -X POST "127.0.0.1:$port/hooks/mattermost" \
                --data-urlencode "token=$token" --data-urlencode "text=#burn" \
                --data-urlencode "trigger_word=#burn" --data-urlencode "post_id=burn$n$RANDOM$RANDOM" \
                --data-urlencode "channel_id=chan0000000000000000000000" \
                --data-urlencode "team_id=team0000000000000000000000" \
                --data-urlencode "user_id=alice0000000000000000000aa" --data-urlencode "user_name=alice" \
                --data-urlencode "channel_name=ci" --data-urlencode "team_domain=eng" \
                --data-urlencode "timestamp=$(date +%s)"
        done
        sleep 0.5
    fi
    "$load" --url "http://127.0.0.1:$port/hooks/$platform" --token "$token" --teams-secret "$secret" \
        --platform "$platform" --connections "$connections" \
        ${rate:+--rate "$rate"} --duration 10 --warmup 2 2>&1 |
        grep -E '^\| [a-z0-9:/.]+ \|' | grep -v '^| server' | cut -d'|' -f3,4,5 | tr '\n' ' '
    echo
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

for round in $(seq "$rounds"); do
    for case in "teams||no" "mattermost||no" "mattermost|500|yes"; do
        IFS='|' read -r platform rate burn <<<"$case"
        label="$platform${rate:+ at $rate/s}"
        if [ "$burn" = yes ]; then label="$label, two CPU-bound runs"; fi
        echo -n "round $round, $label, old: "; drive "$old" 18081 "$platform" "$rate" "$burn"
        echo -n "round $round, $label, new: "; drive "$new" 18082 "$platform" "$rate" "$burn"
    done
done

#!/usr/bin/env bash
# A fuzzing campaign, outside CI: runs every fuzz target for SECONDS (default 3600)
# from the kept corpus, then merges what it found, minimised, back into
# fuzz/corpus/TARGET (committed; CI replays it); seeds named by hand (not by their
# SHA-1) are kept as they are. Crashes stop the campaign and stay in
# fuzz/artifacts/TARGET.
#
#   scripts/fuzz-campaign.sh [SECONDS] [TARGET...]
set -euo pipefail
seconds="${1:-3600}"; shift || true
cd "$(dirname "$0")/../fuzz"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || read -r -a targets <<< "$(cargo fuzz list | tr '\n' ' ')"
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for t in "${targets[@]}"; do
    kept="corpus/$t"; found="../target/fuzz-campaign/$t"
    mkdir -p "$kept" "$found"
    echo "=== $t: ${seconds}s"
    cargo fuzz run "$t" "$found" "$kept" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY)' || true
    [ -z "$(ls "artifacts/$t" 2>/dev/null)" ] || { echo "crash in $t: fuzz/artifacts/$t"; exit 1; }
    merged="../target/fuzz-campaign/$t.min"
    rm -rf "$merged"; mkdir -p "$merged"
    if cargo fuzz run "$t" "$merged" "$kept" "$found" -- -merge=1 -timeout=10 > /dev/null 2>&1 \
        && [ -n "$(ls "$merged")" ]; then
        # Seeds kept by name (regressions, written by hand) stay whatever the merge
        # thinks of their coverage; the merge names its inputs by their SHA-1.
        find "$kept" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}' \
            -exec cp {} "$merged" \;
        rm -rf "$kept"; mv "$merged" "$kept"
    else
        echo "$t: merge failed; the kept corpus is unchanged"
    fi
    echo "$t: $(ls "$kept" | wc -l) inputs kept"
done

#!/usr/bin/env bash
# Run the criterion benches and splice each one's summary table into its lab's README.
#
#   scripts/update-bench-numbers.sh                 # every bench
#   scripts/update-bench-numbers.sh seek-vs-scan    # one
#
# Each bench writes target/bench-summary/<id>.md (criterion's estimates of this run, the
# machine, the data) after its own output; this script puts that file between
# `<!-- bench:start -->` and `<!-- bench:end -->` in labs/<id>/README.md. Numbers are never
# typed. Run it on a quiet machine: nothing else compiling or running.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  set -- $(sed -n 's/^name = "\(.*\)"$/\1/p' benches/Cargo.toml | grep -v '^benches$')
fi
summaries=target/bench-summary

. scripts/splice.sh

for id in "$@"; do
  rm -f "$summaries/$id.md"
  cargo bench -p benches --bench "$id"
  readme="labs/$id/README.md"
  if [ ! -f "$summaries/$id.md" ]; then
    echo "$id: the bench wrote no summary ($summaries/$id.md)" >&2
    exit 1
  fi
  splice "$readme" '<!-- bench:start -->' '<!-- bench:end -->' "$summaries/$id.md"
  echo "updated $readme"
done

#!/usr/bin/env bash
# Re-measure every lab and splice the real reports into the READMEs.
#
#   scripts/update-readme-numbers.sh            # all labs, default scale
#   scripts/update-readme-numbers.sh seek-vs-scan
#
# Runs `lab run ... --out`, then, per lab:
#   - replaces the text between `<!-- numbers:start -->` and `<!-- numbers:end -->` in
#     labs/<id>/README.md with that lab's report.md (and copies its SVG charts);
#   - writes labs/<id>/baseline.json: the very run the README shows, which
#     `lab run <id> --baseline` and `lab compare` put beside a user's run;
#   - re-splices labs/<id>/curl.md (server labs) between `<!-- curl:start -->` and
#     `<!-- curl:end -->`, so README, `lab serve` banner and main.rs docs never drift;
# and the catalogue block in README.md with the run's index. Numbers in READMEs are never
# typed. Run it on a quiet machine: nothing else compiling or running.
set -euo pipefail
cd "$(dirname "$0")/.."
labs=("${@:-all}")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo build --release -p lab
./target/release/lab run "${labs[@]}" --scale default --no-progress --out "$out" >/dev/null

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
stamp="$(date -u +%Y-%m-%d)"

. scripts/splice.sh

for dir in "$out"/*/; do
  id=$(basename "$dir")
  readme="labs/$id/README.md"
  [ -f "$readme" ] || continue
  {
    echo
    echo "Measured by \`scripts/update-readme-numbers.sh\` (\`lab run ${labs[*]} --scale default --out DIR\`, release build) on $machine, $stamp. Reproduce this lab alone with \`cargo run --release -p lab -- run $id\`."
    echo
    sed 's/^## /### /' "$dir/report.md"
    echo
  } > "$out/$id.block"
  splice "$readme" '<!-- numbers:start -->' '<!-- numbers:end -->' "$out/$id.block"
  # Charts referenced by the report live next to the README.
  cp "$dir"/*.svg "labs/$id/" 2>/dev/null || true
  cp "$dir/report.json" "labs/$id/baseline.json"
  # seek-vs-scan's "expected output": its plans table from this same run.
  if grep -q '<!-- expected:start -->' "$readme"; then
    { echo; awk '/^### Plans: /{p=1; sub(/^### /,""); print "**" $0 "**"; next} p{ if (/^$/ && t) exit; if (/^\|/) t=1; print }' "$dir/report.md"; echo; } > "$out/$id.expected"
    splice "$readme" '<!-- expected:start -->' '<!-- expected:end -->' "$out/$id.expected"
  fi
  if [ -f "labs/$id/curl.md" ] && grep -q '<!-- curl:start -->' "$readme"; then
    { echo; sed 's#{base}#http://127.0.0.1:3000#g' "labs/$id/curl.md"; echo; } > "$out/$id.curl"
    splice "$readme" '<!-- curl:start -->' '<!-- curl:end -->' "$out/$id.curl"
  fi
  echo "updated $readme and labs/$id/baseline.json"
done

{
  echo
  echo "Measured with \`cargo run --release -p lab -- run all\` (default scale) on $machine, $stamp."
  echo
  sed -n '/^| lab /,$p' "$out/index.md" | sed 's#](\([a-z-]*\)/report.md)#](labs/\1/README.md)#'
  echo
} > "$out/catalogue.block"
splice README.md '<!-- catalogue:start -->' '<!-- catalogue:end -->' "$out/catalogue.block"
echo "updated README.md"

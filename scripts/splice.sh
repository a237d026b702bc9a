# Sourced by the update-*-numbers scripts.
#
# splice FILE START END REPLACEMENT: replace what stands between the lines matching START and
# END in FILE (the marker lines stay) with the contents of REPLACEMENT.
splice() {
  awk -v start="$2" -v end="$3" -v repl="$4" '
    $0 ~ start { print; while ((getline line < repl) > 0) print line; skip = 1; next }
    $0 ~ end   { skip = 0 }
    !skip' "$1" > "$1.tmp" && mv "$1.tmp" "$1"
}

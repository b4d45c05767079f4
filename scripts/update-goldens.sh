#!/usr/bin/env bash
# Re-records the golden example traces under tests/golden/examples/torch-<version>/
# with the torch of GENIE_PYTHON (default /usr/bin/python3), and writes each
# trace's canonical dump beside it for review. Run from anywhere, after a build:
#   scripts/update-goldens.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
genie="${GENIE_BINARY:-$root/build/cli/genie}"
python="${GENIE_PYTHON:-/usr/bin/python3}"
[ -x "$genie" ] || { echo "update-goldens: $genie is not built (run scripts/setup.sh)" >&2; exit 1; }
torch="$("$python" -c 'import torch; print(".".join(torch.__version__.split("+")[0].split(".")[:2]))')"
out="$root/tests/golden/examples/torch-$torch"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
while read -r name args; do
  case "$name" in ''|'#'*) continue ;; esac
  # Recorded from inside the scratch folder so the header's command line names no checkout.
  cp "$root/examples/$name.py" "$work/$name.py"
  (cd "$work" && "$genie" record -o "$out/$name.gtrace" --payload none "$python" "$name.py" $args >/dev/null)
  "$genie" trace dump "$out/$name.gtrace" >"$out/$name.txt"
  echo "update-goldens: $out/$name.gtrace"
done <"$root/tests/golden/examples/examples.list"

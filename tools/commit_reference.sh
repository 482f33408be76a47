#!/usr/bin/env bash
# Commit each finished reference-run job's files (a job is finished once its provenance file exists), every minute,
# so that a stopped session loses at most the jobs in flight. Run beside `python -m l2l_core.experiments.reference train`.
set -u
cd "$(dirname "$0")/.."
while true; do
  for prov in reference/lstms/*/provenance-*.json; do
    [ -e "$prov" ] || continue
    git cat-file -e "HEAD:$prov" 2>/dev/null && continue
    dir=$(dirname "$prov"); stem=${prov##*/provenance-}; stem=${stem%.json}
    files=("$prov" "$dir/history-$stem.csv" "$dir/$stem.pt")
    for snap in "$dir/$stem"-at*.pt; do [ -e "$snap" ] && files+=("$snap"); done
    seconds=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['seconds'], d['cpu'], d['attempts'])" "$prov")
    git add -- "${files[@]}" && git commit -q -m "Reference run: $(basename "$dir") $stem" \
      -m "One finished reference-run job (seconds, CPU, attempts: $seconds), committed as it finished." \
      -- "${files[@]}" || echo "commit of $stem failed; retrying next round" >&2
  done
  sleep 60
done

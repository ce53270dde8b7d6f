#!/usr/bin/env bash
# Lists the functions a `vmscope run` executes into src/run-path.order, which build.rs hands
# to the linker so they sit together at the start of the binary's code (vmm/DESIGN.md,
# "What one vmscope run process costs"). Run it after changes to the run path:
#
#   cargo build --release && bash src/run-path.sh && cargo build --release
#
# It needs valgrind (callgrind), binutils (nm, readelf) and python3; perf, when present,
# adds the functions at the remaining instruction-fetch page faults (run it twice: the
# second pass sees the faults of the first layout). Names are v0-mangled
# (.cargo/config.toml), and build.rs matches them with the crate hashes as wildcards, so
# the list survives other flags and unrelated changes; what no longer exists is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/x86_64-unknown-linux-gnu/release/vmscope}
out=src/run-path.order
work=$(mktemp -d)
# KEEP=1 keeps the profiles and lists for a look.
if [ -n "${KEEP:-}" ]; then echo "kept in $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

elf=$("$bin" guests path unikernel)
runs=(
  "run unikernel --workload exit 0"
  "run unikernel --workload hello"
  "run unikernel --workload uart 100"
  "run unikernel --workload hypercalls 100"
  "run --elf $elf --workload exit 0"
)
i=0
for args in "${runs[@]}"; do
  i=$((i + 1))
  # callgrind cannot run under vmscope's seccomp filters (valgrind makes calls of its own).
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$i" \
    "$bin" --no-seccomp $args >/dev/null 2>"$work/log.$i" ||
    { echo "callgrind of '$args' failed:" >&2; tail -5 "$work/log.$i" >&2; exit 1; }
done

# The functions callgrind saw run (fn= lines), with callgrind's name compression ("(N) name"
# defines N, "(N)" refers back). Callgrind does not always know which object a function of
# a static binary belongs to; the names are matched against the binary's own below.
awk '
  function name(s,   id) {
    if (match(s, /^\([0-9]+\)/)) {
      id = substr(s, 2, RLENGTH - 2); s = substr(s, RLENGTH + 1); sub(/^ /, "", s)
      if (s == "") return names[FILENAME, id]
      names[FILENAME, id] = s
    }
    return s
  }
  /^fn=/ { print name(substr($0, 4)) }
  /^cfn=/ { name(substr($0, 5)) }
' "$work"/cg.* | sort -u >"$work/ran"

# The seccomp filters' set-up, which callgrind cannot see (it runs with --no-seccomp).
nm --defined-only "$bin" | awk '$3 ~ /(7seccomp|11seccompiler)/ { print $3 }' >>"$work/ran"

# What callgrind misses (code that runs before it starts, tiny functions): the functions at
# the instruction fetches that page-fault in the runs, as perf sees them.
if command -v perf >/dev/null; then
  for args in "${runs[@]}"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    perf record -q -e exceptions:page_fault_user -o "$work/pf.$i" -- "$bin" $args >/dev/null 2>&1 || true
    perf script -i "$work/pf.$i" --show-mmap-events -F trace 2>/dev/null >"$work/pf.$i.txt" || true
  done
  readelf -lW "$bin" | awk '$1 == "LOAD" { print $2, $3, $5 }' >"$work/segments"
  nm -n --defined-only "$bin" >"$work/nm"
  python3 - "$bin" "$work" >>"$work/ran" <<'PY'
import bisect, glob, os, re, sys
binary, work = os.path.realpath(sys.argv[1]), sys.argv[2]
segments = [tuple(int(x, 16) for x in l.split()) for l in open(f"{work}/segments")]
syms = [(int(p[0], 16), p[2]) for p in (l.split() for l in open(f"{work}/nm")) if len(p) == 3]
addrs = [a for a, _ in syms]
for path in glob.glob(f"{work}/pf.*.txt"):
    maps = []
    for line in open(path):
        m = re.search(r"\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ (0x[0-9a-f]+|\d+) .*\]: \S+ (\S+)", line)
        if m and os.path.realpath(m.group(4)) == binary:
            maps.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 0)))
        m = re.search(r"address=(0x[0-9a-f]+) ip=\S+ error_code=(0x[0-9a-f]+)", line)
        if not m or not int(m.group(2), 16) & 0x10:  # instruction fetches only
            continue
        a = int(m.group(1), 16)
        for start, length, pgoff in maps:
            if start <= a < start + length:
                off = a - start + pgoff
                for seg_off, seg_vaddr, seg_size in segments:
                    if seg_off <= off < seg_off + seg_size:
                        i = bisect.bisect_right(addrs, off - seg_off + seg_vaddr) - 1
                        if i >= 0:
                            print(syms[i][1])
PY
fi

# Every name of each function that ran: the compiler merges identical functions into one
# under several names, and the linker script finds the function by the name of its own.
awk 'NR == FNR { ran[$1] = 1; next } { names[$1] = names[$1] " " $3; if ($3 in ran) hot[$1] = 1 }
     END { for (a in hot) print names[a] }' "$work/ran" <(nm --defined-only "$bin") | tr ' ' '\n' |
  sed '/^$/d' | sort -u >"$work/all"

# In address order: code that runs together in this build stays together.
nm -n --defined-only "$bin" | awk 'NR == FNR { ran[$1] = 1; next } ($3 in ran) && !seen[$3]++ { print $3 }' \
  "$work/all" - >"$out"
echo "$(wc -l <"$out") functions in $out"

#!/usr/bin/env bash
# The `centering` command end to end on generated files: the README's
# "From the shell" session, then the other subcommands and formats, each
# output checked. Usage: .ci/cli_e2e.sh path/to/centering
set -euo pipefail
bin=$(realpath "${1:?usage: $0 path/to/centering}")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
step() { printf '\n$ %s\n' "$*" >&2; "$@"; }

# The README's session.
awk 'BEGIN { print "id,temp,load"; for (i = 0; i < 100000; i++) printf "%d,%.1f,%d\n", i, 20 + (i % 5) / 2, i % 8 }' > sensors.csv
step "$bin" fit sensors.csv --columns temp,load -o state.json
step "$bin" inspect state.json
step "$bin" transform sensors.csv --columns temp,load --state state.json -o centred.csv
step head -3 centred.csv
test "$(sed -n 2p centred.csv)" = "0,-1,-3.5"

# .npy (written with python3's standard library: no numpy needed), every mode.
python3 - <<'EOF'
import struct
n, d = 10000, 4
head = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
head += " " * ((-(10 + len(head) + 1)) % 64) + "\n"
with open("x.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
    f.write(struct.pack("<%dd" % (n * d), *[(i // d % 97) * 0.5 + i % d for i in range(n * d)]))
EOF
step "$bin" fit x.npy -o all.json
step "$bin" fit x.npy --momentum 0.99 --start zero --batch-rows 100 -o keras.json
step "$bin" fit x.npy --torch-momentum 0.1 --batch-rows 100 -o torch.json
step "$bin" fit x.npy --batch-average --batch-rows 100 -o avg.json
step "$bin" inspect keras.json --json > keras_inspect.json
python3 -c 'import json, sys; v = json.load(open("keras_inspect.json")); assert v["n_batches"] == 100 and v["params"]["momentum"] == 0.99, v'
step "$bin" transform x.npy --state all.json -o y.npy
step "$bin" fit y.npy -o y.json
step "$bin" inspect y.json --json > y_inspect.json
python3 -c 'import json; m = json.load(open("y_inspect.json"))["mean"]; assert all(abs(v) < 1e-9 for v in m), m'
# --format: a .npy under another name gives the same state and output.
cp x.npy x.bin
step "$bin" fit x.bin --format npy -o bin.json
cmp bin.json all.json
step "$bin" transform x.bin --format npy --state all.json -o y.bin
cmp y.bin y.npy
# Standard input: the same state and output as from the file.
step sh -c "cat x.npy | '$bin' fit - --format npy -o pipe.json"
cmp pipe.json all.json
step sh -c "cat x.npy | '$bin' transform - --format npy --state all.json -o y_pipe.npy"
cmp y_pipe.npy y.npy
step sh -c "cat sensors.csv | '$bin' fit - --format csv --columns temp,load -o pipe_csv.json"
cmp pipe_csv.json state.json
# Weights from a column: (1*1 + 4*2) / 3 = 3, and a negative weight is refused.
printf 'x,w\n1,1\n4,2\n' > weighted.csv
step "$bin" fit weighted.csv --weights w -o weighted.json
python3 -c 'import json, subprocess, sys; assert json.loads(subprocess.check_output([sys.argv[1], "inspect", "weighted.json", "--json"]))["mean"] == [3.0]' "$bin"
printf 'x,w\n1,1\n4,-2\n' > negative.csv
if "$bin" fit negative.csv --weights w -o negative.json 2> err.txt; then echo "a negative weight was accepted" >&2; exit 1; fi
grep -q 'line 3, weights column "w": "-2": expected a finite non-negative weight' err.txt
test ! -e negative.json
# A state merged with itself: the same mean, twice the samples.
step "$bin" merge all.json all.json -o twice.json
python3 -c '
import json, subprocess, sys
a = json.loads(subprocess.check_output([sys.argv[1], "inspect", "all.json", "--json"]))
b = json.loads(subprocess.check_output([sys.argv[1], "inspect", "twice.json", "--json"]))
assert a["mean"] == b["mean"] and 2 * a["n_samples_seen"] == b["n_samples_seen"], (a, b)' "$bin"
# Resume continues the stream.
step "$bin" fit x.npy --resume all.json -o all.json
python3 -c 'import json, subprocess, sys; assert json.loads(subprocess.check_output([sys.argv[1], "inspect", "all.json", "--json"]))["n_samples_seen"] == 20000' "$bin"

# Errors: exit 1 with a message naming the place, no output left behind.
printf 'a,b\n1,2\n3,oops\n' > bad.csv
if "$bin" fit bad.csv -o bad.json 2> err.txt; then echo "bad.csv was accepted" >&2; exit 1; fi
grep -q 'line 3, column "b": "oops" is not a number' err.txt
test ! -e bad.json
# A piped .npy whose header promises 8 TiB in one row: an error, not an abort.
python3 - <<'EOF2'
import struct
head = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, %d), }" % 2**40
head += " " * ((-(10 + len(head) + 1)) % 64) + "\n"
open("big.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
EOF2
if sh -c "cat big.npy | '$bin' fit - --format npy -o big.json" 2> err.txt; then echo "big.npy was accepted" >&2; exit 1; fi
grep -q -e '<stdin>: cannot allocate a batch of 1 rows of 1099511627776 features' -e '<stdin> is truncated' err.txt
test ! -e big.json
if "$bin" fit - --format npy -o empty.json < /dev/null 2> err.txt; then echo "empty stdin was accepted" >&2; exit 1; fi
grep -q '<stdin> is empty: expected a .npy file' err.txt
set +e
"$bin" fit --bogus 2> /dev/null
code=$?
set -e
test "$code" -eq 2
test -z "$(ls -A | grep '^\.centering-' || true)"
echo
echo "centering CLI end to end: ok"

#!/usr/bin/env bash
# gpu-check.sh: neocloud's agent on a real NVIDIA GPU, end to end.
#
# Starts a server (embedded SQLite, temp dir) and a real agent (NVML through
# go-nvml) reporting every second, puts the GPUs under load (PyTorch matrix
# products, where python3 has torch), and compares the energy the server
# stored for the load interval with the card's own energy counter, read
# independently through NVML's Python binding, and with the integral of the
# power samples. Exits non-zero when stored and independent energy differ
# by more than 2%.
#
# It only reads the GPU: it never sets power limits, clocks, persistence,
# MIG or resets.
#
# A GPU machine may have no Go toolchain and no network: build the binary
# where Go is (with cgo, the default) and copy it over:
#   go build -o bin/neocloud ./cmd/neocloud
#   NEOCLOUD_BIN=bin/neocloud LOAD_S=45 scripts/gpu-check.sh
set -euo pipefail

BIN=${NEOCLOUD_BIN:-./bin/neocloud}
LOAD_S=${LOAD_S:-45}
TOLERANCE_PCT=${TOLERANCE_PCT:-2}
# The comparison needs at least 10 of the agent's 1 s reports in the interval.
[[ "$LOAD_S" =~ ^[0-9]+$ ]] && [ "$LOAD_S" -ge 12 ] || { echo "gpu-check: LOAD_S=$LOAD_S: the load must run at least 12 s (30-60 s is usual)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "gpu-check: no neocloud binary at $BIN (set NEOCLOUD_BIN)" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
command -v python3 >/dev/null || { echo "gpu-check: python3 is needed for the independent reading" >&2; exit 2; }
# The driver's libnvidia-ml may lie outside the loader's path (a container
# mounts the driver's folder, /usr/local/nvidia say): the agent, which
# loads it at run time, and the independent reader look there too
# (NVML_DIRS: where to look, in order).
NVML_DIRS=${NVML_DIRS:-/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib64/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/cuda/compat}
if ! python3 -c 'import ctypes; ctypes.CDLL("libnvidia-ml.so.1")' 2>/dev/null; then
  for d in $NVML_DIRS; do
    if [ -e "$d/libnvidia-ml.so.1" ]; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "== libnvidia-ml.so.1 from $d"
      break
    fi
  done
fi
# The independent reading goes through NVML's Python binding (pip package
# nvidia-ml-py) where it is installed, else straight to the driver's
# libnvidia-ml with ctypes (a GPU machine may have no network to install it).
python3 -c 'import pynvml' 2>/dev/null || python3 -c 'import ctypes; ctypes.CDLL("libnvidia-ml.so.1")' 2>/dev/null ||
  { echo "gpu-check: python3 can reach neither NVML's binding (nvidia-ml-py) nor libnvidia-ml.so.1" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export NEOCLOUD_SERVER=http://127.0.0.1:$PORT
export NEOCLOUD_BOOTSTRAP_TOKEN=gpucheck-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export NEOCLOUD_TOKEN=$NEOCLOUD_BOOTSTRAP_TOKEN

echo "== server on $NEOCLOUD_SERVER (SQLite in $WORK/data)"
"$BIN" server --listen 127.0.0.1:$PORT --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('$NEOCLOUD_SERVER/readyz', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

# One node of the site stands for this machine; its agent joins as it.
SKU=h100-sxm5-80gb
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -q H200 && SKU=h200-sxm-141gb
"$BIN" fleet generate --gpus 8 --sku "$SKU" --out "$WORK/site.yaml" >/dev/null 2>&1
"$BIN" fleet apply -f "$WORK/site.yaml" >/dev/null 2>&1
read -r HOST SERIAL < <(python3 -c "
import re,sys
m=re.search(r'hostname: ([^,]+), serial: ([^,]+),', open('$WORK/site.yaml').read())
print(m.group(1), m.group(2))")
SECRET=$("$BIN" node join-token create --site colossus-1 --uses 1 --ttl 1h -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

echo "== agent (NVML) as node $HOST, reporting every second"
"$BIN" agent --join-token "$SECRET" --hostname "$HOST" --serial "$SERIAL" --state-dir "$WORK/agent" \
  --interval 1s --notices-addr "" >"$WORK/agent.log" 2>&1 &
AGENT=$!
PIDS+=($AGENT)
seq_now() { "$BIN" node agent "$HOST" -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("seq",0))' 2>/dev/null || echo 0; }
for _ in $(seq 60); do
  kill -0 $AGENT 2>/dev/null || { echo "gpu-check: the agent exited:" >&2; cat "$WORK/agent.log" >&2; exit 1; }
  [ "$(seq_now)" -ge 3 ] && break
  sleep 0.5
done
[ "$(seq_now)" -ge 3 ] || { echo "gpu-check: no reports reached the server" >&2; cat "$WORK/agent.log" "$WORK/server.log" >&2; exit 1; }
grep '^gpu ' "$WORK/agent.log" | sed 's/^/agent found /'

echo "== load for ${LOAD_S}s, the card's own counter read independently every 50 ms"
LOAD_S=$LOAD_S python3 - "$WORK/independent.json" <<'EOF'
import json, os, subprocess, sys, threading, time
try:
    import pynvml
except ImportError:
    import ctypes

    class pynvml:  # the calls used here, straight to the driver's library
        lib = ctypes.CDLL("libnvidia-ml.so.1")

        class _util(ctypes.Structure):
            _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]

        @staticmethod
        def _ok(rc, what):
            if rc != 0:
                raise SystemExit(f"gpu-check: NVML {what} returned {rc}")

        @classmethod
        def nvmlInit(cls):
            cls._ok(cls.lib.nvmlInit_v2(), "init")

        @classmethod
        def nvmlDeviceGetCount(cls):
            n = ctypes.c_uint()
            cls._ok(cls.lib.nvmlDeviceGetCount_v2(ctypes.byref(n)), "device count")
            return n.value

        @classmethod
        def nvmlDeviceGetHandleByIndex(cls, i):
            h = ctypes.c_void_p()
            cls._ok(cls.lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(i), ctypes.byref(h)), "device handle")
            return h

        @classmethod
        def _text(cls, fn, d, what):
            buf = ctypes.create_string_buffer(96)
            cls._ok(fn(d, buf, ctypes.c_uint(len(buf))), what)
            return buf.value.decode()

        @classmethod
        def nvmlDeviceGetName(cls, d):
            return cls._text(cls.lib.nvmlDeviceGetName, d, "name")

        @classmethod
        def nvmlDeviceGetUUID(cls, d):
            return cls._text(cls.lib.nvmlDeviceGetUUID, d, "UUID")

        @classmethod
        def nvmlDeviceGetTotalEnergyConsumption(cls, d):
            mj = ctypes.c_ulonglong()
            cls._ok(cls.lib.nvmlDeviceGetTotalEnergyConsumption(d, ctypes.byref(mj)), "total energy")
            return mj.value

        @classmethod
        def nvmlDeviceGetUtilizationRates(cls, d):
            u = cls._util()
            cls._ok(cls.lib.nvmlDeviceGetUtilizationRates(d, ctypes.byref(u)), "utilization")
            return u

pynvml.nvmlInit()
devs = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
for i, d in enumerate(devs):
    name = pynvml.nvmlDeviceGetName(d)
    uuid = pynvml.nvmlDeviceGetUUID(d)
    print(f"nvml found gpu {i}: {name.decode() if isinstance(name, bytes) else name} {uuid.decode() if isinstance(uuid, bytes) else uuid}")

readings, stop = [], threading.Event()
def sample():
    while not stop.is_set():
        t = time.time()
        mj = sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(d) for d in devs)
        util = max(pynvml.nvmlDeviceGetUtilizationRates(d).gpu for d in devs)
        readings.append((t, mj, util))
        time.sleep(0.05)
th = threading.Thread(target=sample, daemon=True)
th.start()

load_s = float(os.environ["LOAD_S"])
code = f"""
import time, torch
if not torch.cuda.is_available():
    raise SystemExit("torch sees no GPU")
xs = []
for i in range(torch.cuda.device_count()):
    a = torch.randn(8192, 8192, device=f"cuda:{{i}}", dtype=torch.bfloat16)
    xs.append((a, a.clone()))
end = None
while True:
    for a, b in xs:
        a @ b
    torch.cuda.synchronize()
    if end is None:
        print("load running", flush=True)
        end = time.time() + {load_s} + 30
    if time.time() > end:
        break
"""
have_torch = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
load = subprocess.Popen([sys.executable, "-c", code]) if have_torch else None
if load is None:
    print("no torch here: the GPUs are measured idle")
# The load counts from when utilization has really risen (importing torch
# takes seconds).
t_on = time.time()
deadline = t_on + 120
while load is not None and time.time() < deadline:
    if readings and readings[-1][2] >= 50:
        break
    if load.poll() is not None:
        raise SystemExit("the load exited early")
    time.sleep(0.1)
t_on = time.time()
if load is not None:
    print(f"utilization {readings[-1][2]}%: load on")
time.sleep(load_s)
t_off = time.time()
if load is not None:
    load.terminate()
    load.wait()
time.sleep(2)
stop.set()
th.join()
json.dump({"t_on": t_on, "t_off": t_off, "readings": readings}, open(sys.argv[1], "w"))
EOF

sleep 2
LAST=$(seq_now)
"$BIN" node samples "$HOST" --to-seq "$LAST" -o json >"$WORK/samples.json"
"$BIN" node agent "$HOST" -o json >"$WORK/state.json"

TOLERANCE_PCT=$TOLERANCE_PCT python3 - "$WORK/independent.json" "$WORK/samples.json" "$WORK/state.json" <<'EOF'
import bisect, json, os, re, sys
from datetime import datetime

ind = json.load(open(sys.argv[1]))
samples = json.load(open(sys.argv[2]))
state = json.load(open(sys.argv[3]))
if isinstance(samples, dict):
    samples = samples.get("items", [])

def ts(s):  # RFC 3339 with up to nanoseconds
    m = re.match(r"(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)

t_on, t_off = ind["t_on"], ind["t_off"]
window = [s for s in samples if t_on <= ts(s["at"]) <= t_off]
if len(window) < 10:
    sys.exit(f"gpu-check: only {len(window)} stored samples in the load interval")
first, last = window[0], window[-1]
t0, t1 = ts(first["at"]), ts(last["at"])

times = [r[0] for r in ind["readings"]]
def counter_j(t):  # the card's counter at t, interpolated between 50 ms reads
    i = bisect.bisect_left(times, t)
    if i == 0 or i >= len(times):
        sys.exit("gpu-check: the independent reads do not cover the interval")
    (ta, ea, _), (tb, eb, _) = ind["readings"][i - 1], ind["readings"][i]
    return (ea + (eb - ea) * (t - ta) / (tb - ta)) / 1000.0

stored = last["energy_j"] - first["energy_j"]
independent = counter_j(t1) - counter_j(t0)
integral = sum((window[i]["power_w"] + window[i + 1]["power_w"]) / 2 * (ts(window[i + 1]["at"]) - ts(window[i]["at"])) for i in range(len(window) - 1))
diff = 100.0 * (stored - independent) / independent
gpus = state.get("heartbeat", {}).get("gpus", [])
print(f"interval                 {t1 - t0:8.1f} s between reports {first['seq']} and {last['seq']} ({len(window)} reports)")
print(f"server-stored energy     {stored:10.0f} J  (sum of the GPUs' counters in the stored reports)")
print(f"card's counter (NVML)    {independent:10.0f} J  (read independently, every 50 ms)")
print(f"integral of power        {integral:10.0f} J  (trapezoid over the stored power samples)")
print(f"mean power               {stored / (t1 - t0):10.1f} W")
print(f"stored vs counter        {diff:+9.3f} %")
hb = state.get("heartbeat", {})
print(f"last report: health {state.get('health')}, driver {hb.get('driver_version')}, temperatures {[g.get('temp_c') for g in gpus]}, throttle {[g.get('throttle') for g in gpus]}")
print(f"NICs: {[(n.get('name'), 'up' if n.get('up') else 'down') for n in hb.get('nics') or []]}")
tol = float(os.environ["TOLERANCE_PCT"])
if abs(diff) > tol:
    sys.exit(f"gpu-check: FAIL — stored energy differs from the card's counter by {diff:+.2f}% (more than {tol}%)")
print(f"gpu-check: OK — within {tol}%")
EOF

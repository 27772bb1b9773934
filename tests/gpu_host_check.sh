#!/usr/bin/env bash
# What no CPU machine can check: the local target on a host with a real NVIDIA GPU. Not part of the pytest suite
# (CI has no GPU); run by hand, or through the device tool, from the repository root:
#   bash tests/gpu_host_check.sh
# It installs mlplat (offline: wheels from .whl/ when present), prints what nvidia-smi and NVML report, what the
# local target detects, then validates, applies, calls and destroys a stack with a GPU pool of the detected
# accelerator (its model server's and router's /metrics carry NVML's GPU metrics under DCGM's names, `mlplat top`
# shows the pool's utilisation, a killed model server is restarted), and checks that a pool asking for more GPUs
# than the host has is refused at validate.
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
SITE=/tmp/mlplat-site
if ! python3 -c "import mlplat_plugins.local.host" 2>/dev/null; then  # not installed (a bare GPU machine): offline install
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            || exit 1
    fi
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" . || exit 1
    export PYTHONPATH=$SITE PATH=$SITE/bin:$PATH
fi
export NO_COLOR=1
step() { echo; echo "=== $*"; }

step "nvidia-smi"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv

step "NVML (nvidia-ml-py), read directly"
python3 - <<'EOF'
try:
    import pynvml
except ImportError:
    print("pynvml not installed here")
else:
    pynvml.nvmlInit()
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        util = pynvml.nvmlDeviceGetUtilizationRates(h)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        print(f"gpu {i}: {pynvml.nvmlDeviceGetName(h)} util {util.gpu}% mem {mem.used >> 20}/{mem.total >> 20} MiB "
              f"power {pynvml.nvmlDeviceGetPowerUsage(h) / 1000:.0f} W temp "
              f"{pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)} C")
EOF

step "what the local target detects"
ACCEL=$(python3 - <<'EOF'
from mlplat_plugins.local.host import detect
host = detect()
import sys
print(host, file=sys.stderr)
print(next((g.accelerator for g in host.gpus if g.accelerator), "none"))
EOF
)
COUNT=$(python3 -c "from mlplat_plugins.local.host import detect; print(len(detect().gpus_of('$ACCEL')))")
echo "accelerator: $ACCEL x $COUNT"
[ -n "$ACCEL" ] && [ "$ACCEL" != none ] || { echo "FAIL: no GPU mapped to a catalog accelerator"; exit 1; }

WORK=$(mktemp -d)
cp -r stacks/models "$WORK/"
cat > "$WORK/gpu.yaml" <<EOF
apiVersion: mlplat/v1
metadata: {name: gpu-check}
clusters:
  - name: train
    gpu_pools:
      - {name: gpus, accelerator: $ACCEL, gpus_per_node: $COUNT}
registry:
  name: models
  models: [{name: iris, version: "1", artifact: models/iris-v1.json}]
serving:
  - name: iris
    paths: {production: {model: "iris:1"}}
EOF
sed "s/gpus_per_node: $COUNT/gpus_per_node: $((COUNT + 1))/" "$WORK/gpu.yaml" > "$WORK/too-many.yaml"

step "validate, discovery in a saved plan, apply, call, destroy"
cd "$WORK"
python3 -m provisioner.cli validate -f gpu.yaml || exit 1
python3 -m provisioner.cli preview -f gpu.yaml -o plan.json | grep "discovered on target local" || exit 1
python3 -c "import json; print('plan discovery:', json.load(open('plan.json'))['discovery'])"
if MLPLAT_LOCAL_GPUS= python3 -m provisioner.cli apply plan.json -f gpu.yaml --yes 2> refused.txt; then
    echo "FAIL: a plan made with the GPUs applied on a host without them"; exit 1
fi
grep "target 'local': gpus was" refused.txt || { cat refused.txt; exit 1; }
python3 -m provisioner.cli apply plan.json -f gpu.yaml --yes 2>&1 | tail -4 || exit 1
python3 -m provisioner.cli state show train.gpu_pool.gpus -f gpu.yaml | tee "$OUT/gpu_pool_record.json"
URL=$(python3 -m provisioner.cli output iris.url -f gpu.yaml)
python3 -c "import urllib.request,sys; print(urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/invocations', data=b'{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}'), timeout=10).read().decode())" "$URL"
step "NVML metrics: the model server's and the router's /metrics, mlplat top"
python3 - "$URL" "$WORK" <<'PYEOF' || exit 1
import json, os, signal, subprocess, sys, time, urllib.request
from pathlib import Path
router, work = sys.argv[1], Path(sys.argv[2])
token = (work / ".mlplat/gpu-check/local/internal.token").read_text().strip()
record = json.loads(subprocess.run([sys.executable, "-m", "provisioner.cli", "state", "show",
                                    "iris.model_server.production", "-f", "gpu.yaml"], capture_output=True,
                                   text=True, check=True).stdout)
server = record["outputs"]["url"]
def metrics(url, headers=None):
    req = urllib.request.Request(url + "/metrics", headers=headers or {})
    return urllib.request.urlopen(req, timeout=10).read().decode()
for name, text in (("model server", metrics(server, {"X-Mlplat-Internal": token})), ("router", metrics(router))):
    gpu = [l for l in text.splitlines() if l.startswith(("mlplat_gpu_available", "DCGM_FI_DEV"))]
    print(f"{name}:", *gpu, sep="\n  ")
    assert "mlplat_gpu_available 1" in gpu, f"FAIL: {name} has no NVML metrics"
    assert any(l.startswith("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-") and "modelName=" in l for l in gpu), name
top = json.loads(subprocess.run([sys.executable, "-m", "provisioner.cli", "top", "-f", "gpu.yaml", "--once", "--json",
                                 "--window", "1"], capture_output=True, text=True, check=True).stdout)
print("mlplat top pools:", json.dumps(top["pools"]))
assert any(p["gpu_util_percent"] is not None for p in top["pools"]), "FAIL: top shows no GPU utilisation"
health = json.loads(urllib.request.urlopen(server + "/-/healthz", timeout=5).read())
killed = time.monotonic()
os.kill(health["server_pid"], signal.SIGKILL)
while True:
    try:
        again = json.loads(urllib.request.urlopen(server + "/-/healthz", timeout=0.2).read())
        if again.get("server_pid") not in (None, health["server_pid"]):
            break
    except OSError:
        pass
    time.sleep(0.01)
print(f"supervisor restarted the killed model server in {(time.monotonic() - killed) * 1000:.0f} ms")
assert "mlplat_gpu_available 1" in metrics(server, {"X-Mlplat-Internal": token}), "FAIL: no NVML after restart"
PYEOF
python3 -m provisioner.cli preview -f gpu.yaml --detailed-exitcode > /dev/null || { echo "FAIL: preview not a no-op after the heal"; exit 1; }
python3 -m provisioner.cli destroy -f gpu.yaml --yes 2>&1 | tail -2
rm -f plan.json refused.txt
ls -A "$WORK"

step "a pool asking for more GPUs than the host has"
python3 -m provisioner.cli validate -f too-many.yaml && { echo "FAIL: accepted"; exit 1; }
echo "PASS"

#!/bin/sh
# pal GPU kit: measures pal on this machine and prints JSON lines on stdout (progress on stderr).
#   ./run.sh          the paper's shapes (PAL-B D=1024, d=512/1024, K=1,2,4, batch 256/2048/16384)
#   ./run.sh --quick  small shapes (what `cargo xtask gpu-kit --check` runs on lavapipe)
# Lines: {"kind":"info"} (CPU, adapter, driver), {"kind":"train"} per shape and device (burn on
# wgpu vs the fused CPU engine), {"kind":"torch"} (PyTorch, when importable), {"kind":"score"}
# (WGSL ranking vs the CPU reference), {"kind":"gpu_memory"} after each GPU run (nvidia-smi peak),
# {"kind":"error"} for a run that failed or timed out, {"kind":"done"} last. See README.md here.
set -u
cd "$(dirname "$0")"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
PER_RUN="${PAL_KIT_TIMEOUT:-90}"
STARTED=$(date +%s)

say() { echo "pal-kit: $*" >&2; }

# The binary travels gzipped; unpack it once.
if [ ! -x ./pal ]; then
  gzip -dc pal.gz > pal.tmp && chmod +x pal.tmp && mv pal.tmp pal || { say "cannot unpack pal.gz"; exit 1; }
fi

# Highest GPU memory in use (MiB) while the background job $1 runs; "null" without nvidia-smi.
watch_gpu() {
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    wait "$1"; return $?
  fi
  peak=0
  while kill -0 "$1" 2>/dev/null; do
    m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
    [ -n "$m" ] && [ "$m" -gt "$peak" ] && peak=$m
    sleep 0.2
  done
  wait "$1"
}

# run LABEL CMD...: runs one measurement with a timeout; its JSON line goes to stdout.
run() {
  label=$1; shift
  say "$label"
  out=$(mktemp)
  timeout "$PER_RUN" "$@" >"$out" 2>"$out.err" &
  pid=$!
  peak=null
  watch_gpu "$pid"; rc=$?
  if [ "$rc" -eq 0 ] && [ -s "$out" ]; then
    cat "$out"
    if command -v nvidia-smi >/dev/null 2>&1; then
      echo "{\"kind\":\"gpu_memory\",\"of\":\"$label\",\"peak_used_mib\":$peak}"
    fi
  else
    why=$(tail -c 300 "$out.err" | tr '\n"\\' "   ")
    echo "{\"kind\":\"error\",\"of\":\"$label\",\"exit\":$rc,\"stderr\":\"$why\"}"
  fi
  rm -f "$out" "$out.err"
}

run "info" ./pal bench info
if [ "$QUICK" -eq 1 ]; then
  DIMS="32:16"; KS="1 2"; BATCHES="64 256"; SECS=1; SCORE_ITEMS="2000 20000"; SD="32:16:2"
else
  DIMS="1024:512 1024:1024"; KS="1 2 4"; BATCHES="256 2048 16384"; SECS=4
  SCORE_ITEMS="100000 1000000"; SD="384:128:4"
fi
HAS_TORCH=0
if command -v python3 >/dev/null 2>&1 && python3 -c "import torch" 2>/dev/null; then
  HAS_TORCH=1
  TORCH_DEV=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
fi
for dims in $DIMS; do
  D=${dims%%:*}; d=${dims##*:}
  for k in $KS; do
    for b in $BATCHES; do
      shape="--variant b --d-item $D --d $d --k $k --batch $b --seconds $SECS"
      # shellcheck disable=SC2086
      run "train wgpu D=$D d=$d K=$k batch=$b" ./pal bench train $shape --device wgpu --engine burn
      # shellcheck disable=SC2086
      run "train cpu D=$D d=$d K=$k batch=$b" ./pal bench train $shape --device cpu --engine fused
      if [ "$HAS_TORCH" -eq 1 ]; then
        steps=$(( b >= 16384 ? 6 : 30 ))
        run "torch $TORCH_DEV D=$D d=$d K=$k batch=$b" python3 torch_pal_b.py --device "$TORCH_DEV" \
          --d-item "$D" --d-prompt "$D" --d "$d" --k "$k" --layers 3 --batch "$b" \
          --comparisons $(( b * steps )) --epochs 1 --warmup 2 --label "D=$D d=$d K=$k batch=$b"
      fi
    done
  done
done
sd_D=${SD%%:*}; rest=${SD#*:}; sd_d=${rest%%:*}; sd_k=${rest##*:}
for n in $SCORE_ITEMS; do
  run "score $n items" ./pal bench score --items "$n" --d-item "$sd_D" --d "$sd_d" --k "$sd_k"
done
echo "{\"kind\":\"done\",\"seconds\":$(( $(date +%s) - STARTED )),\"quick\":$QUICK}"

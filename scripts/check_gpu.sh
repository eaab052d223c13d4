#!/usr/bin/env bash
# Exercise medgen's CUDA paths on a machine with a GPU: training with bf16 and fp16 AMP, torchrun
# (NCCL) with one process per GPU, sampling, denoising and super-resolution on the GPU, and the
# agreement of GPU and CPU enhancement. Prints one "PASS"/"FAIL" line per check and exits non-zero
# if any failed. Usage: [ONLY=REGEX] bash scripts/check_gpu.sh [WORKDIR]   (about three minutes on one GPU)
set -u
W=${1:-$(mktemp -d)}
mkdir -p "$W"
fails=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  [[ $name =~ ${ONLY:-.} ]] || return 0
  local t0=$SECONDS
  if "$@" >"$W/$name.log" 2>&1; then echo "PASS $name ($((SECONDS - t0)) s)"
  else echo "FAIL $name ($((SECONDS - t0)) s)"; tail -n 15 "$W/$name.log"; fails=$((fails + 1)); fi
}
python3 -c "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name())" || exit 1
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
sed 's/steps: 200,/steps: 30, precision: fp16,/' configs/brain3mm_rflow.yaml >"$W/rflow_fp16.yaml"
check train_gan_bf16 medgen train configs/brain3mm_gan.yaml --out "$W/gan" --device cuda --steps 30
check train_rflow_fp16 medgen train "$W/rflow_fp16.yaml" --out "$W/rflow" --device cuda --steps 30
check torchrun_ddp torchrun --standalone --nproc_per_node "$NGPU" -m medgen train configs/brain3mm_rflow.yaml \
  --out "$W/ddp" --device cuda --steps 20
check synthesize_cuda medgen synthesize "$W/rflow/model" --num 2 --out "$W/samples" --sampler rflow --steps 10 \
  --device cuda
check export medgen data export --out "$W/brains" --subjects 1 --resolution 2 --seed 0
IMG=$(ls "$W"/brains/images/*.nii.gz | head -n 1)
check denoise_cuda medgen denoise "$IMG" "$W/dn_gpu.nii.gz" --device cuda --flips 2
check denoise_cpu medgen denoise "$IMG" "$W/dn_cpu.nii.gz" --device cpu --flips 2
check superres_cuda medgen superres "$IMG" "$W/sr_gpu.nii.gz" --factor 2 --axis 2 --device cuda
check superres_cpu medgen superres "$IMG" "$W/sr_cpu.nii.gz" --factor 2 --axis 2 --device cpu
check gpu_matches_cpu python3 - "$W" <<'EOF'
import sys
import nibabel as nib
import numpy as np
w = sys.argv[1]
for op in ("dn", "sr"):
    g, c = (np.asarray(nib.load(f"{w}/{op}_{d}.nii.gz").dataobj, np.float32) for d in ("gpu", "cpu"))
    rel = float(np.abs(g - c).mean() / (np.abs(c).mean() + 1e-6))
    print(op, "mean |gpu - cpu| / mean |cpu| =", rel)
    assert rel < 0.01, op
EOF
echo "$fails failed"
exit $((fails > 0))

#!/usr/bin/env bash
# Issue 11, point 4 on a lent GPU machine (the `device` tool): m-OvR vs softmax/MLS on CIFAR-10 (JPEG copy), `neal`
# splits 0-2, bf16, 30 epochs, into benchmarks/results/movr_cifar10_jpeg_gpu.{db,json,md}, copied to $OUT.
# The machine has PyTorch and every osrkit dependency, but neither ../shared nor a network, so carry the data:
#   here:  mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.gz data/
#   then:  device run, command "bash benchmarks/device_cifar_movr.sh", carry ["data/cifar10-jpeg.tar.gz"]
# Every network checkpoints per epoch; a rerun on the same warm machine resumes (a fresh one starts over).
set -euo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-benchmarks/results}"
if [ ! -d data/cifar10-jpeg-root/train ]; then
  mkdir -p data/cifar10-jpeg-root && tar -xzf data/cifar10-jpeg.tar.gz -C data/cifar10-jpeg-root
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
status=0
python3 benchmarks/movr_mnist.py --config "${GRID:-benchmarks/grid_cifar10_jpeg_movr_gpu.yaml}" \
  --name "${NAME:-movr_cifar10_jpeg_gpu}" > "$OUT/device_cifar_movr.log" 2>&1 || status=$?
tail -40 "$OUT/device_cifar_movr.log"
for f in benchmarks/results/"${NAME:-movr_cifar10_jpeg_gpu}".{db,json,md}; do  # what finished, also after a failure
  [ -f "$f" ] && [ "$OUT" != benchmarks/results ] && cp "$f" "$OUT/"
done
exit "$status"

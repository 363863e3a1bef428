#!/usr/bin/env bash
# Issue 29: data-parallel runs on this one machine (CPU, gloo).
#   nodes:      two torchrun launches with --nnodes 2 on 127.0.0.1 (one process each) train the
#               tests' small run (tests/ddp_worker.py); compared with one plain process.
#   throughput: ml-1m, fast mode, 1 process x 2 threads vs 2 processes x 1 thread, same global
#               batch; seconds per training epoch from each run's metrics.json.
# Usage: [EPOCHS=N] benchmarks/ddp_runs.sh nodes|throughput OUT_DIR   (throughput: N epochs, 2)
set -euo pipefail
step=$1
out=$2
py=.venv/bin/python
mkdir -p "$out"
case "$step" in
nodes)
  rm -rf "$out/one" "$out/nodes"
  $py tests/ddp_worker.py "$out/one" "$out/one.json" > "$out/one.log" 2>&1
  port=$((29500 + RANDOM % 1000))
  for node in 0 1; do
    OMP_NUM_THREADS=1 $py -m torch.distributed.run --nnodes 2 --node_rank $node \
      --nproc_per_node 1 --master_addr 127.0.0.1 --master_port $port \
      tests/ddp_worker.py "$out/nodes" "$out/nodes.json" > "$out/node$node.log" 2>&1 &
  done
  wait
  $py - "$out" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
one, two = (json.load(open(f"{out}/{name}.json")) for name in ("one", "nodes"))
diff = np.abs(np.array(one["losses"]) - np.array(two["losses"]))
print(json.dumps({"steps": len(one["losses"]), "max_abs_loss_difference": float(diff.max()),
                  "test_one": one["test"]["ndcg@10"], "test_two_nodes": two["test"]["ndcg@10"],
                  "max_abs_test_metric_difference": max(abs(one["test"][k] - two["test"][k])
                                                        for k in one["test"])}))
PY
  ;;
throughput)
  settings=(--model sasrec --dataset ml-1m --set train.instances=window --set data.max_len=200
            --set train.batch_size=64 --set train.epochs=${EPOCHS:-2} --set train.progress=false
            --set model.hidden_dropout=0.2 --set model.attn_dropout=0.2)
  rm -rf "$out/p1t2" "$out/p2t1"
  OMP_NUM_THREADS=2 .venv/bin/denoiserec train "${settings[@]}" --set train.threads=2 \
    --output "$out/p1t2" > "$out/p1t2.log" 2>&1
  OMP_NUM_THREADS=1 $py -m torch.distributed.run --standalone --nproc_per_node 2 \
    -m denoiserec.cli train "${settings[@]}" --set train.threads=1 --output "$out/p2t1" \
    > "$out/p2t1.log" 2>&1
  $py - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("p1t2", "p2t1"):
    m = json.load(open(f"{out}/{name}/metrics.json"))
    epochs = [round(e["train_seconds"], 1) for e in m["epochs"]]
    print(json.dumps({"run": name, "train_seconds_per_epoch": epochs,
                      "valid_seconds": [round(e["valid_seconds"], 1) for e in m["epochs"]],
                      "test_ndcg@10": round(m["test"]["ndcg@10"], 4)}))
PY
  ;;
*) echo "usage: $0 nodes|throughput OUT_DIR" >&2; exit 2 ;;
esac

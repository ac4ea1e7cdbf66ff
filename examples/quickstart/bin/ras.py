"""Stand-in for HEC-RAS: reads the event's HMS peaks, writes a stage result for one unit."""
import argparse
import csv
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--event", type=int, required=True)
p.add_argument("--unit", required=True)
p.add_argument("--hms", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
row = next(csv.DictReader(open(os.path.join(a.hms, "peaks.csv"))))
assert int(row["event"]) == a.event, (row, a.event)
result = {"event": a.event, "unit": a.unit, "peak_cfs": float(row["peak_cfs"]),
          "stage_ft": round(float(row["peak_cfs"]) / 100, 2),
          "gpus_on_node": os.environ.get("SLURM_GPUS_ON_NODE"),
          "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
with open(os.path.join(a.out, "result.json"), "w") as f:
    json.dump(result, f)
print(json.dumps(result))

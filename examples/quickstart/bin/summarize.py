"""Stand-in for the summary/conformance step: collects every RAS result that exists."""
import argparse
import glob
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--run-dir", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
results = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(a.run_dir, "steps/ras/*/*/result.json")))]
events = sorted({r["event"] for r in results})
summary = {"ras_results": len(results), "events_complete": events,
           "max_stage_ft": max((r["stage_ft"] for r in results), default=None)}
with open(a.out, "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps(summary))

"""Stand-in for HEC-HMS: reads the event's storm, writes a peak-flow CSV for the event."""
import argparse
import csv
import os
import sys

p = argparse.ArgumentParser()
p.add_argument("--event", type=int, required=True)
p.add_argument("--storms", required=True)
p.add_argument("--fail-event", type=int, default=0)
p.add_argument("--out", required=True)
a = p.parse_args()
if os.environ.get("CC_EVENT_IDENTIFIER") != str(a.event):
    sys.exit(f"CC_EVENT_IDENTIFIER={os.environ.get('CC_EVENT_IDENTIFIER')!r}, expected {a.event}")
rows = {int(r["event"]): r for r in csv.DictReader(open(a.storms))}
storm = rows[a.event]
if a.event == a.fail_event:
    print(f"event {a.event}: simulated HMS failure (fail_event)", file=sys.stderr)
    sys.exit(1)
peak = round(1000 * float(storm["scale"]) + a.event, 1)
with open(os.path.join(a.out, "peaks.csv"), "w") as f:
    f.write("event,storm_id,peak_cfs\n")
    f.write(f"{a.event},{storm['storm_id']},{peak}\n")
print(f"event {a.event}: peak {peak} cfs")

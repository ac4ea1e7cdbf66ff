"""Stand-in for SST sampling: writes a storm table (event, storm id, transposition, scale)."""
import argparse
import csv
import random

p = argparse.ArgumentParser()
p.add_argument("--events", type=int, required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
rng = random.Random(42)
with open(a.out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["event", "storm_id", "dx_km", "dy_km", "scale"])
    for e in range(1, a.events + 1):
        w.writerow([e, f"storm-{rng.randint(1, 440):03d}", rng.randint(-50, 50),
                    rng.randint(-50, 50), round(rng.uniform(0.8, 1.2), 3)])
print(f"wrote {a.events} events to {a.out}")

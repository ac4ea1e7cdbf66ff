"""Plan -> sbatch scripts and run-directory files (pure)."""

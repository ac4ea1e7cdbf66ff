"""The names of the environment variables that carry registry secrets (Apptainer,
Singularity, Charliecloud). The runners strip them from the environment of every command
hpcflow runs, unless the image pull is given them explicitly, and mask their values in what
they log; the pull script (render/) reads only these. Here, below both, because render sits
below runners in the layers (docs/architecture.md)."""

from __future__ import annotations

SECRET_NAMES = (
    "APPTAINER_DOCKER_USERNAME",
    "APPTAINER_DOCKER_PASSWORD",
    "SINGULARITY_DOCKER_USERNAME",
    "SINGULARITY_DOCKER_PASSWORD",
    "CH_IMAGE_USERNAME",
    "CH_IMAGE_PASSWORD",
)

"""The one seam to the machine: local subprocess or SSH."""

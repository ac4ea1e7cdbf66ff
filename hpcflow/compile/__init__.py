"""Workflow + site -> Plan: steps, jobs, arrays, dependencies (pure)."""

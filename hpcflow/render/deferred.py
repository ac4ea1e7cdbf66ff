"""What the expansion of a dynamic foreach needs, written into the run directory at submit
(`dynamic/spec.json`): the workflow as validated (overrides applied), its params, the static
axes' values, the bounds and the producers' directories. The expansion reads only this and the
producers' files, so editing the workflow or a foreach file after submitting changes nothing."""

from __future__ import annotations

import json
from typing import Any

from hpcflow.compile.plan import Plan
from hpcflow.node.jobtool import task_dir
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded

SPEC = "dynamic/spec.json"
SPEC_VERSION = 1


def deferred_spec(plan: Plan, loaded: Loaded, site: Site | None) -> dict[str, str]:
    d = loaded.deferral
    doc: dict[str, Any] = {
        "version": SPEC_VERSION,
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "max_array_size": plan.max_array_size,
        "max_elements": loaded.max_elements,
        "workflow_path": str(loaded.path.resolve()),
        "workflow": loaded.workflow.model_dump(mode="json", by_alias=True),
        "params": loaded.params,
        "axes": loaded.axes,
        "order": loaded.order,
        "deferred": sorted(d.deferred),
        "producers": {p: task_dir(plan.run_dir, p, 0) for p in d.producers},
        "site": site.source if site else None,
        "expand_in": site.dynamic.expand_in if site else "login",  # as the expand job does
    }
    return {SPEC: json.dumps(doc, indent=1) + "\n"}

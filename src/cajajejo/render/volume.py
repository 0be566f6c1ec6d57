"""A volume on its own (`cajajejo volumes apply`): the PersistentVolumeClaim of a SkyPilot volume file, made
before any group uses it and kept after every group that mounts it has gone.

It is the claim a group makes from the same file (the same template), labelled with `cajajejo/volume`
instead of a group: `groups delete` never takes it, and a group that names the file mounts it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cajajejo.config.group import VolumeFile
from cajajejo.render.plan import (
    LABEL_MANAGED_BY,
    LABEL_PREFIX,
    LABEL_VOLUME,
    Provenance,
    RenderOptions,
    check_documents,
    inputs_sha256,
    plan_namespace,
    render_documents,
    rendered_header,
    stamped_identity,
)
from cajajejo.render.yaml_text import dump_documents


@dataclass(frozen=True)
class VolumePlan:
    name: str
    namespace: str
    document: dict[str, Any]

    def to_yaml(self) -> str:
        return dump_documents([self.document], header=rendered_header(f"volume {self.name}", "volume file"))


def render_volume_plan(volume: VolumeFile, text: str, provenance: Provenance, options: RenderOptions) -> VolumePlan:
    """The claim of `volume` (read from `text`), stamped like a job's objects, validated like every plan."""
    namespace = plan_namespace(options, None)
    identity = {LABEL_MANAGED_BY: LABEL_PREFIX, LABEL_VOLUME: volume.name}
    stamped = stamped_identity(identity, volume.name, namespace, provenance, inputs_sha256(text))
    documents = render_documents(
        "common/volume.yaml.j2", {"stamped": stamped, "volume": volume.to_volume()}, options.template_dir
    )
    check_documents(documents, [], namespace, options.kubernetes_version)
    return VolumePlan(volume.name, namespace, documents[0])

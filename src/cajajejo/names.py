"""Names in a job group: its Jobs, the DNS names of their pods, and the variables that point at them.

One scheme, used by the config checks (is a name short enough?) and by the renderer (what to write),
so the two cannot disagree:

- the group's headless Service is named after the group: `<group>`;
- task `T` is the Job `<group>-<T>`: unique within the group, whose task names are, but not across
  groups: group `a` with task `b-c` and group `a-b` with task `c` both make the Job `a-b-c`, so two
  groups whose names join like that cannot share a namespace;
- Kubernetes names pod `i` of an Indexed Job `<job>-<i>` (its hostname), and with the Service as the
  pod's subdomain that pod answers as `<group>-<T>-<i>.<group>.<namespace>.svc`;
- every container is told where pod 0 of each task is: `CAJAJEJO_GROUP_HOST_<T>` (upper case, `-`
  becomes `_`), and the same value as SkyPilot's `SKYPILOT_JOBGROUP_HOST_<T>`.

SkyPilot's own hostnames (`<T>-<i>.<group>`) would need Jobs named after the task alone, and two
groups with a task of the same name could then not share a namespace; scripts that use the variables
work under both schemes.
"""

from __future__ import annotations

import re

from cajajejo import kube

GROUP_NAME_ENV = "CAJAJEJO_GROUP_NAME"
GROUP_HOST_ENV_PREFIX = "CAJAJEJO_GROUP_HOST_"
TASK_NAME_ENV = "CAJAJEJO_TASK_NAME"
NODE_RANK_ENV = "CAJAJEJO_NODE_RANK"
NUM_NODES_ENV = "CAJAJEJO_NUM_NODES"
SKYPILOT_GROUP_NAME_ENV = "SKYPILOT_JOBGROUP_NAME"
SKYPILOT_GROUP_HOST_ENV_PREFIX = "SKYPILOT_JOBGROUP_HOST_"
SKYPILOT_NODE_RANK_ENV = "SKYPILOT_NODE_RANK"
SKYPILOT_NUM_NODES_ENV = "SKYPILOT_NUM_NODES"

# What a group's containers are told by cajajejo; a task's own env may set none of these.
GROUP_ENV_NAMES = frozenset(
    {
        GROUP_NAME_ENV,
        TASK_NAME_ENV,
        NODE_RANK_ENV,
        NUM_NODES_ENV,
        SKYPILOT_GROUP_NAME_ENV,
        SKYPILOT_NODE_RANK_ENV,
        SKYPILOT_NUM_NODES_ENV,
    }
)
GROUP_ENV_PREFIXES = (GROUP_HOST_ENV_PREFIX, SKYPILOT_GROUP_HOST_ENV_PREFIX)
# Where a volume's folder is, for a plain command run on this machine (`groups run --local`).
LOCAL_VOLUME_ENV_PREFIX = "CAJAJEJO_VOLUME_"

# A Service's name is an RFC 1035 label: like a DNS-1123 label, but it must start with a letter.
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def dns1035_label_problem(value: str) -> str | None:
    """Why `value` cannot name a Service (the group's name does), or None."""
    if len(value) > kube.DNS1123_LABEL_MAX:
        return f"is {len(value)} characters long; at most {kube.DNS1123_LABEL_MAX} are allowed"
    if not _DNS1035_LABEL.fullmatch(value):
        return "must be lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
    return None


def task_job_name(group: str, task: str) -> str:
    """The Job (and ConfigMap) of task `task` in group `group`."""
    return f"{group}-{task}"


def pod_hostname(job_name: str, index: int) -> str:
    """The hostname Kubernetes gives pod `index` of an Indexed Job."""
    return f"{job_name}-{index}"


def pod_dns_name(job_name: str, service: str, namespace: str, index: int) -> str:
    """Pod `index`'s stable DNS name, resolvable from any pod of the cluster once it has an address."""
    return f"{pod_hostname(job_name, index)}.{service}.{namespace}.svc"


def hostname_problem(group: str, task: str, nodes: int) -> str | None:
    """Why the hostname of the task's last pod would not be a DNS label (too long), or None."""
    longest = pod_hostname(task_job_name(group, task), nodes - 1)
    if len(longest) > kube.DNS1123_LABEL_MAX:
        return (
            f"group name and task name are too long together: the hostname {longest!r} of pod {nodes - 1} has "
            f"{len(longest)} characters, at most {kube.DNS1123_LABEL_MAX} fit; shorten one of them"
        )
    return None


def host_variable_suffix(task: str) -> str:
    """`rollout-server` -> `ROLLOUT_SERVER`: task names are DNS labels, so this is always a variable name."""
    return task.upper().replace("-", "_")


def discovery_env(group: str, namespace: str, tasks: list[str]) -> dict[str, str]:
    """The group's name and where pod 0 of each task is, under cajajejo's and SkyPilot's names."""
    hosts = {task: pod_dns_name(task_job_name(group, task), group, namespace, 0) for task in tasks}
    env = {GROUP_NAME_ENV: group}
    env.update({GROUP_HOST_ENV_PREFIX + host_variable_suffix(task): host for task, host in hosts.items()})
    env[SKYPILOT_GROUP_NAME_ENV] = group
    env.update({SKYPILOT_GROUP_HOST_ENV_PREFIX + host_variable_suffix(task): host for task, host in hosts.items()})
    return env


def local_volume_variable(mount_path: str) -> str:
    """`/checkpoints` -> `CAJAJEJO_VOLUME_CHECKPOINTS`: each run of other characters becomes one `_`.

    So `/data-x` and `/data/x` have the same variable; the group file's checks refuse a task with both.
    """
    return LOCAL_VOLUME_ENV_PREFIX + (re.sub(r"[^A-Z0-9]+", "_", mount_path.upper()).strip("_") or "ROOT")


def is_group_variable(name: str) -> bool:
    """Whether cajajejo sets `name` in a group's containers."""
    return name in GROUP_ENV_NAMES or name.startswith(GROUP_ENV_PREFIXES)

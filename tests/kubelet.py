"""What the kubelet makes of a container's command, args and env values: `$(VAR)` expansion.

Kubernetes expands `$(VAR)` in a container's command, args and env values when VAR is defined in the
container's env, turns `$$` into `$`, and leaves anything else as written (an undefined `$(X)`, a lone
`$`). Tests use this to check that a user's string reaches the process exactly as the user wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(value: str, defined: Mapping[str, str]) -> str:
    """`value` as the container's process receives it."""
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char != "$" or i + 1 == len(value):
            out.append(char)
            i += 1
            continue
        following = value[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = value.find(")", i + 2)
            if end == -1:
                out.append(value[i:])
                break
            name = value[i + 2 : end]
            out.append(defined[name] if name in defined else value[i : end + 1])
            i = end + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)

"""What ``launch/sfs.launch.py`` starts, as plain Python (testable without the launch packages).

The launch file declares :data:`ARGUMENTS`, evaluates them to strings and passes them to
:func:`plan_launch`, which returns the node's namespace, parameters and remappings and whether
to start RViz; :func:`write_params_file` then writes the parameters for the node.

The user's params file is read with :func:`sfs_core.config.load_config` (the loader the ``sfs``
CLI uses), so relative model paths resolve against its folder as they do for ``sfs --config``.
The node gets the result as a new params file keyed ``/**`` rather than as a launch_ros parameter
dict: the file's ``sfs_node:`` section then applies in any namespace, and launch_ros does not
re-read string values as YAML (it would turn ``""`` into null, ``"1.0"`` into a number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sfs_core.config import NODE_NAME, load_config


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


ARGUMENTS = (
    LaunchArgument("image", "/camera/image_raw",
                   "input image topic (sensor_msgs/Image); image/compressed is remapped to <image>/compressed"),
    LaunchArgument("params_file", "", "ROS parameter YAML with an 'sfs_node: ros__parameters:' section; "
                   "empty: the package's config/sfs.yaml"),
    LaunchArgument("namespace", "", "namespace for the node and its topics (empty: none)"),
    LaunchArgument("use_rviz", "false", "true: also start RViz showing the overlay and colour images"),
    LaunchArgument("device", "", "torch device (cpu, cuda, cuda:N, mps); empty: as in the params file"),
    LaunchArgument("open_vocab", "", "true/false: switch the open-vocabulary branch (open_vocab.enabled); "
                   "empty: as in the params file"),
)

#: Topics the RViz configuration (config/sfs.rviz) displays, for a node without namespace.
RVIZ_TOPICS = (f"/{NODE_NAME}/overlay", f"/{NODE_NAME}/semantic_color")


@dataclass(frozen=True)
class LaunchPlan:
    """Everything the launch file needs to create its actions."""

    namespace: str
    parameters: dict[str, Any]
    remappings: list[tuple[str, str]]
    use_rviz: bool
    rviz_config: Path
    rviz_remappings: list[tuple[str, str]]


def parse_bool(name: str, text: str) -> bool:
    """``true``/``false`` (any case, or 1/0) as a bool; ValueError naming the argument otherwise."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"launch argument '{name}': expected true or false, got '{text}'")


def plan_launch(values: Mapping[str, str], share_dir: str | Path) -> LaunchPlan:
    """The node and RViz set-up for evaluated launch-argument ``values`` (missing ones take the
    :data:`ARGUMENTS` defaults). ``share_dir`` is the package's share folder.

    Raises ValueError for a bad boolean and :class:`sfs_core.config.ConfigError` for a params file
    the core cannot read.
    """
    args = {a.name: a.default for a in ARGUMENTS}
    unknown = set(values) - set(args)
    if unknown:
        raise ValueError(f"unknown launch arguments: {', '.join(sorted(unknown))}")
    args.update(values)
    share_dir = Path(share_dir)

    overrides: dict[str, Any] = {}
    if args["device"].strip():
        overrides["device"] = args["device"].strip()
    if args["open_vocab"].strip():
        overrides["open_vocab.enabled"] = parse_bool("open_vocab", args["open_vocab"])
    params_file = Path(args["params_file"]) if args["params_file"].strip() else share_dir / "config" / "sfs.yaml"
    # A ROS params file cannot type an empty list; the node's default applies to those.
    parameters = {k: v for k, v in load_config(params_file, overrides).to_params().items() if v != []}

    namespace = args["namespace"].strip().strip("/")
    image = args["image"].strip()
    prefix = f"/{namespace}" if namespace else ""
    return LaunchPlan(
        namespace=namespace,
        parameters=parameters,
        remappings=[("image", image), ("image/compressed", f"{image}/compressed")],
        use_rviz=parse_bool("use_rviz", args["use_rviz"]),
        rviz_config=share_dir / "config" / "sfs.rviz",
        rviz_remappings=[(topic, prefix + topic) for topic in RVIZ_TOPICS] if prefix else [],
    )


def write_params_file(parameters: Mapping[str, Any], folder: str | Path) -> Path:
    """Write flat dotted ``parameters`` as ``<folder>/sfs_node.params.yaml`` in ROS form, nested
    under ``/**: ros__parameters:`` (any node name, any namespace); returns the path."""
    tree: dict[str, Any] = {}
    for name, value in parameters.items():
        *groups, leaf = name.split(".")
        branch = tree
        for group in groups:
            branch = branch.setdefault(group, {})
        branch[leaf] = value
    path = Path(folder) / f"{NODE_NAME}.params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": tree}}, sort_keys=False))
    return path

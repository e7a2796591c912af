"""Objects in `algo.*` written with Hydra's `_target_`: imported and checked in the driver, built
where RLlib needs them.

- Connector options (`env_to_module_connector`, `module_to_env_connector`, `learner_connector`): a
  node, or a list of nodes, becomes a `Connectors` factory; RLlib calls it in every EnvRunner and
  Learner, so each builds its own fresh pieces (a filter's running statistics are per runner).
- Options named `*_class` or `*_cls` take a class: `{_target_: my_pkg.MyCallbacks}` is the class itself
  (a list of such nodes, a list of classes).
- Any other `_target_` node is called in the driver with its other keys as keyword arguments (nested
  nodes first, with the same rules), e.g. an `RLModuleSpec` whose `module_class` is a class.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlgraft.errors import RlgraftError, did_you_mean

TARGET = "_target_"
CONNECTOR_OPTIONS = {"env_to_module_connector", "module_to_env_connector", "learner_connector"}


def locate(path: str, where: str) -> Any:
    """`pkg.module.Name` (or `pkg.module:Name`) -> the object; a one-paragraph error naming the key."""
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise RlgraftError(f"`{where}._target_: {path}` is not a dotted path to a class or function",
                           fix=f"write {where}._target_=package.module.Name")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RlgraftError(f"`{where}._target_: {path}`: module `{module_name}` does not import "
                           f"({type(exc).__name__}: {exc})",
                           fix="install the package that has it, or run from the folder that holds the module") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = {n for n in dir(obj) if not n.startswith("_")}
            raise RlgraftError(f"`{where}._target_: {path}`: `{module_name}` has no `{attr}`"
                               f"{did_you_mean(part, names)}",
                               fix=f"correct {where}._target_")
        obj = getattr(obj, part)
    return obj


def is_node(value: Any) -> bool:
    return isinstance(value, Mapping) and TARGET in value


def has_targets(value: Any) -> bool:
    if is_node(value):
        return True
    if isinstance(value, Mapping):
        return any(has_targets(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_targets(v) for v in value)
    return False


@dataclass(frozen=True)
class Connectors:
    """RLlib's connector option: `(env, spaces, device) -> piece or [pieces]`, built fresh per call.

    Plain fields (target paths and keyword items) so it pickles by name into every EnvRunner.
    """

    pieces: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    as_list: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        built = [locate(path, "connector")(**dict(items)) for path, items in self.pieces]
        return built if self.as_list else built[0]


def connectors(value: Any, where: str, multi_agent: bool = False) -> Connectors:
    """The factory for a connector option; in a multi-agent run a piece that takes `multi_agent`
    (RLlib's MeanStdFilter) gets `multi_agent=True` unless the node sets it."""
    nodes = list(value) if isinstance(value, list | tuple) else [value]
    pieces = []
    for i, node in enumerate(nodes):
        key = f"{where}[{i}]" if isinstance(value, list | tuple) else where
        if not is_node(node):
            raise RlgraftError(f"`{key}` is {node!r}, not a connector", fix=f"write {key}._target_=package.Piece")
        kwargs = {k: v for k, v in node.items() if k != TARGET}
        if has_targets(kwargs):
            raise RlgraftError(f"`{key}`: connector arguments cannot hold `_target_` nodes",
                               fix="pass plain values; build complex pieces in a function and target it")
        cls = locate(str(node[TARGET]), key)
        if multi_agent and "multi_agent" not in kwargs and _takes(cls, "multi_agent"):
            kwargs["multi_agent"] = True
        try:
            cls(**kwargs)  # checked once in the driver; the runners build their own
        except Exception as exc:
            raise RlgraftError(f"`{key}`: {node[TARGET]}({kwargs}) raised {type(exc).__name__}: {exc}",
                               fix=f"correct the arguments under {key}") from exc
        pieces.append((str(node[TARGET]), tuple(sorted(kwargs.items()))))
    return Connectors(tuple(pieces), as_list=isinstance(value, list | tuple))


def stateful_pieces(value: Any) -> list[str]:
    """Class names of the connector pieces in a connector option that keep state between steps (override
    `get_state`, as MeanStdFilter does); their state is saved under their class name in a checkpoint."""
    from ray.rllib.connectors.connector_v2 import ConnectorV2

    nodes = list(value) if isinstance(value, list | tuple) else [value] if value is not None else []
    out = []
    for node in nodes:
        if is_node(node):
            cls = locate(str(node[TARGET]), "algo.env_runners.env_to_module_connector")
            if isinstance(cls, type) and getattr(cls, "get_state", None) is not ConnectorV2.get_state:
                out.append(cls.__name__)
    return out


def _takes(cls: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def build(value: Any, where: str, key: str = "", multi_agent: bool = False) -> Any:
    """`value` with every `_target_` node replaced by what RLlib expects at `where` (see module doc)."""
    if key in CONNECTOR_OPTIONS and has_targets(value):
        return connectors(value, where, multi_agent)
    if key.endswith(("_class", "_cls")) and (is_node(value) or isinstance(value, list | tuple)):
        if isinstance(value, list | tuple):
            return [build(v, f"{where}[{i}]", key) for i, v in enumerate(value)]
        extra = sorted(k for k in value if k != TARGET)
        if extra:
            raise RlgraftError(f"`{where}` takes a class, so it has no arguments (found {', '.join(extra)})",
                               fix=f"keep only {where}._target_")
        obj = locate(str(value[TARGET]), where)
        if not callable(obj):
            raise RlgraftError(f"`{where}._target_: {value[TARGET]}` is not a class", fix=f"correct {where}._target_")
        return obj
    if is_node(value):
        kwargs = {k: build(v, f"{where}.{k}", k) for k, v in value.items() if k != TARGET}
        target = locate(str(value[TARGET]), where)
        try:
            return target(**kwargs)
        except Exception as exc:
            raise RlgraftError(f"`{where}`: {value[TARGET]}(...) raised {type(exc).__name__}: {exc}",
                               fix=f"correct the arguments under {where}") from exc
    if isinstance(value, Mapping):
        return {k: build(v, f"{where}.{k}", k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [build(v, f"{where}[{i}]", key) for i, v in enumerate(value)]
    return value

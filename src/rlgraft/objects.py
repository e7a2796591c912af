"""Objects in `algo.*` written with Hydra's `_target_`: imported and checked in the driver, built
where RLlib needs them.

- Connector options (`env_to_module_connector`, `module_to_env_connector`, `learner_connector`): a
  node, or a list of nodes, becomes a `Connectors` factory; RLlib calls it in every EnvRunner and
  Learner, so each builds its own fresh pieces (a filter's running statistics are per runner).
- Options named `*_class` or `*_cls` take a class: `{_target_: my_pkg.MyCallbacks}` is the class itself
  (a list of such nodes, a list of classes).
- Any other `_target_` node is called in the driver with its other keys as keyword arguments (nested
  nodes first, with the same rules), e.g. an `RLModuleSpec` whose `module_class` is a class. Hydra's
  `_args_` (positional arguments) and `_partial_: true` (a `functools.partial`) work as in
  `hydra.utils.instantiate`.
- Hydra's own idiom for passing a class or a function, `{_target_: hydra.utils.get_class, path: X}`
  (`get_method`, `get_object`, `get_static_method` too), names the object at `path` wherever a class or
  callable is taken, as the short form `{_target_: X}` does.
- What an option takes is checked by kind (`KINDS`): a callbacks class that is not an `RLlibCallback`,
  a module class that is not an `RLModule`, a connector piece that is not a `ConnectorV2` is refused
  here, with the key named, not inside the trial.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlgraft.errors import RlgraftError, did_you_mean

TARGET = "_target_"
CONNECTOR_OPTIONS = {"env_to_module_connector", "module_to_env_connector", "learner_connector"}
# Hydra's functions that return the object a dotted `path` names (Hydra's documented way to pass a class).
HYDRA_GETTERS = {"hydra.utils.get_class", "hydra.utils.get_method", "hydra.utils.get_object",
                 "hydra.utils.get_static_method"}
# Hydra's own keys of a `_target_` node that rlgraft honours; `_convert_` is moot (RLlib gets plain values).
HYDRA_KEYS = {"_args_", "_partial_", "_convert_"}
# What an option (by its key) must be, as (dotted base class, what it is). A class is checked with issubclass,
# an object built from a node with isinstance.
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "callbacks_class": (("ray.rllib.callbacks.callbacks.RLlibCallback",), "an RLlibCallback subclass"),
    "module_class": (("ray.rllib.core.rl_module.rl_module.RLModule",), "an RLModule subclass"),
    "catalog_class": (("ray.rllib.core.models.catalog.Catalog",), "a Catalog subclass"),
    "learner_class": (("ray.rllib.core.learner.learner.Learner",), "a Learner subclass"),
    "env_runner_cls": (("ray.rllib.env.env_runner.EnvRunner",), "an EnvRunner subclass"),
    "rl_module_spec": (("ray.rllib.core.rl_module.rl_module.RLModuleSpec",
                        "ray.rllib.core.rl_module.multi_rl_module.MultiRLModuleSpec"),
                       "an RLModuleSpec or MultiRLModuleSpec"),
    "connector": (("ray.rllib.connectors.connector_v2.ConnectorV2",), "a ConnectorV2 subclass"),
}


def locate(path: str, where: str, field: str = TARGET) -> Any:
    """`pkg.module.Name` (or `pkg.module:Name`) -> the object; a one-paragraph error naming the key."""
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise RlgraftError(f"`{where}.{field}: {path}` is not a dotted path to a class or function",
                           fix=f"write {where}.{field}=package.module.Name")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RlgraftError(f"`{where}.{field}: {path}`: module `{module_name}` does not import "
                           f"({type(exc).__name__}: {exc})",
                           fix="install the package that has it, or run from the folder that holds the module") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = {n for n in dir(obj) if not n.startswith("_")}
            raise RlgraftError(f"`{where}.{field}: {path}`: `{module_name}` has no `{attr}`"
                               f"{did_you_mean(part, names)}",
                               fix=f"correct {where}.{field}")
        obj = getattr(obj, part)
    return obj


def is_getter(value: Any) -> bool:
    """`{_target_: hydra.utils.get_class, path: X}`: Hydra's node for the object X itself."""
    return is_node(value) and str(value[TARGET]) in HYDRA_GETTERS


def named(value: Mapping[str, Any], where: str) -> tuple[str, Any]:
    """The dotted path and the object a class node names: `{_target_: X}` or Hydra's getter form."""
    if is_getter(value):
        extra = sorted(k for k in value if k not in (TARGET, "path"))
        if "path" not in value or extra:
            raise RlgraftError(f"`{where}`: {value[TARGET]} takes one key, `path`"
                               + (f" (found {', '.join(extra)})" if extra else " (it is missing)"),
                               fix=f"write {where}={{_target_: {value[TARGET]}, path: package.module.Name}}")
        return str(value["path"]), locate(str(value["path"]), where, "path")
    return str(value[TARGET]), locate(str(value[TARGET]), where)


def _base(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def check_kind(obj: Any, key: str, where: str, path: str) -> None:
    """Refuse an object of the wrong kind for option `key` (see `KINDS`), naming the key."""
    if key not in KINDS:
        return
    dotted, what = KINDS[key]
    bases = tuple(_base(d) for d in dotted)
    while isinstance(obj, functools.partial):  # RLlib exports some pieces as partials (FlattenObservations)
        obj = obj.func
    ok = isinstance(obj, bases) or (isinstance(obj, type) and issubclass(obj, bases))
    if not ok:
        found = (f"the class `{path}` (bases: {', '.join(c.__name__ for c in obj.__mro__[1:4])})"
                 if isinstance(obj, type) else f"`{path}`, which built a {type(obj).__qualname__}")
        raise RlgraftError(f"`{where}` is {found}, not {what}: RLlib would fail on it inside the trial",
                           fix=f"point {where} at {what} (from ray.rllib, or your own subclass of "
                               f"{dotted[0].rpartition('.')[2]})")


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
        path, cls = named(node, key)
        kwargs = {} if is_getter(node) else {k: v for k, v in node.items() if k != TARGET}
        if has_targets(kwargs):
            raise RlgraftError(f"`{key}`: connector arguments cannot hold `_target_` nodes",
                               fix="pass plain values; build complex pieces in a function and target it")
        check_kind(cls, "connector", key, path)
        if multi_agent and "multi_agent" not in kwargs and _takes(cls, "multi_agent"):
            kwargs["multi_agent"] = True
        try:
            cls(**kwargs)  # checked once in the driver; the runners build their own
        except Exception as exc:
            raise RlgraftError(f"`{key}`: {path}({kwargs}) raised {type(exc).__name__}: {exc}",
                               fix=f"correct the arguments under {key}") from exc
        pieces.append((path, tuple(sorted(kwargs.items()))))
    return Connectors(tuple(pieces), as_list=isinstance(value, list | tuple))


def stateful_pieces(value: Any) -> list[str]:
    """Class names of the connector pieces in a connector option that keep state between steps (override
    `get_state`, as MeanStdFilter does); their state is saved under their class name in a checkpoint."""
    from ray.rllib.connectors.connector_v2 import ConnectorV2

    nodes = list(value) if isinstance(value, list | tuple) else [value] if value is not None else []
    out = []
    for node in nodes:
        if is_node(node):
            cls = named(node, "algo.env_runners.env_to_module_connector")[1]
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
        if extra and not is_getter(value):
            raise RlgraftError(f"`{where}` takes a class, so it has no arguments (found {', '.join(extra)})",
                               fix=f"keep only {where}._target_ (or write Hydra's "
                                   f"{{_target_: hydra.utils.get_class, path: package.Name}})")
        path, obj = named(value, where)
        if not callable(obj):
            raise RlgraftError(f"`{where}: {path}` is not a class", fix=f"correct {where}._target_")
        check_kind(obj, key, where, path)
        return obj
    if is_getter(value):
        path, obj = named(value, where)
        check_kind(obj, key, where, path)
        return obj
    if is_node(value):
        unknown = sorted(k for k in value if k.startswith("_") and k.endswith("_") and k != TARGET
                         and k not in HYDRA_KEYS)
        if unknown:
            raise RlgraftError(f"`{where}` uses Hydra key(s) {', '.join(unknown)}, which rlgraft does not support",
                               fix=f"use {', '.join(sorted(HYDRA_KEYS))} only, or build the object in a function "
                                   f"and target it")
        args = value.get("_args_") or []
        if not isinstance(args, list | tuple):
            raise RlgraftError(f"`{where}._args_` is {args!r}, not a list", fix=f"write {where}._args_=[...]")
        kwargs = {k: build(v, f"{where}.{k}", k) for k, v in value.items() if k not in (TARGET, *HYDRA_KEYS)}
        positional = [build(v, f"{where}._args_[{i}]") for i, v in enumerate(args)]
        path = str(value[TARGET])
        target = locate(path, where)
        if value.get("_partial_"):
            if not callable(target):
                raise RlgraftError(f"`{where}: {path}` is not callable, so `_partial_` cannot bind it",
                                   fix=f"correct {where}._target_")
            return functools.partial(target, *positional, **kwargs)
        try:
            built = target(*positional, **kwargs)
        except Exception as exc:
            raise RlgraftError(f"`{where}`: {path}(...) raised {type(exc).__name__}: {exc}",
                               fix=f"correct the arguments under {where}") from exc
        check_kind(built, key, where, path)
        return built
    if isinstance(value, Mapping):
        return {k: build(v, f"{where}.{k}", k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [build(v, f"{where}[{i}]", key) for i, v in enumerate(value)]
    return value

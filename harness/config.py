"""The run configuration: one typed dataclass, overridable from the command line with ``--set``.

Defaults are HARL's ``happo.yaml`` defaults (see DESIGN notes in the README). ``--set key=value``
is type-checked against the field; ``--set env.NAME=value`` sets a task option, checked by the task,
``--set scheme.NAME=value`` an option the scheme declared and ``--set network.NAME=value`` one the
network declared (see :mod:`harness.scheme_config`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from harness.options import coerce
from harness.errors import HarnessError

#: The device names a config accepts (``device``; resolved by :mod:`harness.devices`).
DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that determines a training run."""

    scheme: str = _f("happo", "update scheme (harness plugins lists them)")
    task: str = _f("mpe/simple_spread", "task as family/scenario")
    network: str = _f("mlp", "network builder")
    seed: int = _f(1, "seed of every random generator in the run")
    steps: int = _f(200_000, "total environment steps (summed over parallel copies)")
    n_envs: int = _f(20, "parallel environment copies")
    rollout_length: int = _f(200, "steps per copy per training iteration")
    lr: float = _f(5e-4, "actor learning rate")
    critic_lr: float = _f(5e-4, "critic learning rate")
    adam_eps: float = _f(1e-5, "Adam epsilon")
    lr_decay: bool = _f(False, "decay both learning rates linearly to 0 over the run")
    ppo_epochs: int = _f(5, "actor epochs per iteration")
    critic_epochs: int = _f(5, "critic epochs per iteration")
    actor_minibatches: int = _f(1, "minibatches per actor epoch")
    critic_minibatches: int = _f(1, "minibatches per critic epoch")
    clip: float = _f(0.2, "PPO clip epsilon (also the value clip, in normalised units)")
    entropy_coef: float = _f(0.01, "entropy bonus coefficient")
    max_grad_norm: float = _f(10.0, "gradient norm clip for actors and critic")
    gamma: float = _f(0.99, "discount factor")
    gae_lambda: float = _f(0.95, "GAE lambda")
    huber_delta: float = _f(10.0, "Huber loss delta of the value loss")
    value_norm: bool = _f(True, "normalise value targets with a running mean/std")
    clipped_value_loss: bool = _f(True, "clip the value update around the old value")
    hidden_sizes: list = _f([128, 128], "hidden layer widths, e.g. 128,128")
    activation: str = _f("relu", "hidden activation: relu or tanh")
    fixed_order: bool = _f(False, "HAPPO: update agents in index order instead of a random permutation")
    share_params: str = _f("auto", "MAPPO: share one actor between agents (auto, true, false)")
    eval_interval: int = _f(5, "evaluate every N iterations (0: only at the end)")
    eval_episodes: int = _f(20, "episodes per evaluation (deterministic policy)")
    eval_envs: int = _f(10, "parallel copies used for evaluation")
    checkpoint_interval: int = _f(10, "save a checkpoint every N iterations (and at the end)")
    absolute_factor: int = _f(10, "at the end, re-evaluate the best policy on this many times eval_episodes (0: skip)")
    threads: int = _f(2, "torch threads (the update of a [128,128] MLP on 4,000 samples is ~1.7x faster on 2)")
    env: dict = _f({}, "task options, set as env.NAME=value")
    scheme_options: dict = _f({}, "the scheme's own settings, set as scheme.NAME=value (harness plugins --options "
                                  "SCHEME lists them)", omit_default=True)
    network_options: dict = _f({}, "the network's own settings, set as network.NAME=value (harness plugins --options "
                                   "NETWORK lists them)", omit_default=True)
    network_legacy: dict = _f({}, "set by the network, not by hand: its option values that compute what it computed "
                                  "before it declared options (options at them are left out of the config digest, "
                                  "so older runs keep theirs)", omit_default=True, run_only=True)
    init_from: str = _f("", "start from another run's policy: its run directory (best.pt, else checkpoint.pt) "
                            "or a .pt file", omit_default=True)
    device: str = _f("cpu", "where updates run: cpu, cuda, cuda:N or auto (cuda when available); acting stays "
                            "on the CPU; checkpoints load on any device", run_only=True)
    loggers: list = _f([], "experiment trackers besides metrics.csv, e.g. tensorboard,mlflow,wandb "
                           "(harness plugins lists them; they do not change results)", items=str, run_only=True)

    @property
    def batch_steps(self) -> int:
        """Environment steps per iteration."""
        return self.n_envs * self.rollout_length

    @property
    def iterations(self) -> int:
        """Training iterations the step budget buys (at least one)."""
        return max(1, -(-self.steps // self.batch_steps))

    def budget_note(self) -> str | None:
        """One line saying how much more than ``steps`` the run trains, when iterations round the budget
        up by a tenth of it or more (one iteration is ``n_envs x rollout_length`` steps); else None."""
        trained = self.iterations * self.batch_steps
        if trained - self.steps < max(1, self.steps / 10):
            return None
        how = ("rounded up to one iteration" if self.iterations == 1
               else f"rounded up to {self.iterations} iterations")
        return (f"steps={self.steps:,} is {how} of n_envs={self.n_envs} x rollout_length={self.rollout_length} = "
                f"{self.batch_steps:,} steps: {trained:,} steps in all, {trained - self.steps:,} more "
                f"({_times(trained / self.steps)} the budget); lower n_envs or rollout_length to train closer to it")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """A short hash of the resolved config (provenance)."""
        return config_digest(self.to_dict())

    def validate(self) -> "TrainConfig":
        """Check value ranges; raise a one-line error naming the bad value."""
        for name, typ in _HINTS.items():
            if typ is float and not math.isfinite(getattr(self, name)):
                raise HarnessError(f"{name}={getattr(self, name)} must be a finite number")
        if self.entropy_coef < 0:
            raise HarnessError(f"entropy_coef={self.entropy_coef} must be >= 0")
        positive = ["steps", "n_envs", "rollout_length", "ppo_epochs", "critic_epochs", "actor_minibatches",
                    "critic_minibatches", "eval_episodes", "eval_envs", "checkpoint_interval", "threads"]
        for name in positive:
            if getattr(self, name) < 1:
                raise HarnessError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ["lr", "critic_lr", "adam_eps", "max_grad_norm", "huber_delta", "clip"]:
            if not getattr(self, name) > 0:
                raise HarnessError(f"{name}={getattr(self, name)} must be > 0")
        for name in ["gamma", "gae_lambda"]:
            if not 0 <= getattr(self, name) <= 1:
                raise HarnessError(f"{name}={getattr(self, name)} must be between 0 and 1")
        if self.eval_episodes > MAX_EPISODES:
            raise HarnessError(f"eval_episodes={self.eval_episodes} must be at most {MAX_EPISODES:,}")
        if not 0 <= self.seed <= MAX_SEED:
            raise HarnessError(f"seed={self.seed} must be an integer from 0 to {MAX_SEED}")
        if self.absolute_factor < 0:
            raise HarnessError(f"absolute_factor={self.absolute_factor} must be >= 0")
        if self.eval_interval < 0:
            raise HarnessError(f"eval_interval={self.eval_interval} must be >= 0")
        if self.activation not in ("relu", "tanh"):
            raise HarnessError(f"activation={self.activation!r} is not one of: relu, tanh")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise HarnessError(f"device={self.device!r} is not one of: cpu, cuda, cuda:N, auto")
        if self.share_params not in ("auto", "true", "false"):
            raise HarnessError(f"share_params={self.share_params!r} is not one of: auto, true, false")
        if len(set(self.loggers)) != len(self.loggers):
            twice = sorted({x for x in self.loggers if self.loggers.count(x) > 1})
            raise HarnessError(f"loggers={','.join(self.loggers)} names {', '.join(twice)} twice; name each tracker once")
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise HarnessError(f"hidden_sizes={self.hidden_sizes} must be a non-empty list of positive widths")
        if "/" not in self.task:
            raise HarnessError(f"task {self.task!r} must be written family/scenario, e.g. mpe/simple_spread")
        return self


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


#: The largest seed: every generator the run seeds (Python, NumPy, torch) accepts it.
MAX_SEED = 2**31 - 1
#: The most seeds a suite or sweep may name by count (``seeds = N``); a list may name any.
MAX_SEED_COUNT = 1000
#: The largest count a file or flag may give (seeds, evaluations, retries, jobs, episodes to draw):
#: a count sizes lists and loops, so 2**31 is refused in one line rather than allocated.
MAX_COUNT = 1000
#: The most trials a sweep or a suite's tuning may ask for.
MAX_TRIALS = 10_000
#: The most episodes one evaluation may play (``eval_episodes``, ``harness eval --episodes``).
MAX_EPISODES = 1_000_000


def check_count(value: Any, what: str, maximum: int = MAX_COUNT, minimum: int = 1) -> int:
    """``value`` if it is a count from ``minimum`` to ``maximum``, else a one-line error: ``what`` names
    the value as the user wrote it (``[sweep] trials=5000000``, ``--jobs 100000``), then the range."""
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise HarnessError(f"{what} must be an integer from {minimum} to {maximum:,}")
    return value


def comparable(config: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys of a config (as :meth:`TrainConfig.to_dict` gives it) that say what the run does:
    without the keys that only say how it is watched (:data:`RUN_ONLY`), the keys added later while
    they hold their defaults (:data:`OMIT_DEFAULT`, so older runs compare as they did), and ``drop``.
    A network option holding the value its network records under ``network_legacy`` (what the network
    computed before it declared options) is left out too: such a run is the run it was before."""
    config = _without_legacy(config)
    return {k: v for k, v in config.items()
            if k not in drop and k not in RUN_ONLY and not (k in OMIT_DEFAULT and v == OMIT_DEFAULT[k])}


def _without_legacy(config: dict[str, Any]) -> dict[str, Any]:
    options, legacy = config.get("network_options"), config.get("network_legacy")
    if not (isinstance(options, dict) and isinstance(legacy, dict) and legacy):
        return config
    same = {k for k, v in options.items() if k in legacy and type(legacy[k]) is type(v) and legacy[k] == v}
    return {**config, "network_options": {k: v for k, v in options.items() if k not in same}}


def config_digest(config: dict[str, Any]) -> str:
    """The digest of a config as :meth:`TrainConfig.to_dict` gives it (and config.json stores it),
    over its :func:`comparable` keys: a run resumed or re-run with another tracker is the same run."""
    # A damaged config.json's "config" (not a table) is hashed as it is.
    kept = comparable(config) if isinstance(config, dict) else config
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def absolute_specs(specs: Any) -> list[str]:
    """``--plugin`` values with ``.py`` files made absolute (workers may run in other directories)."""
    return [str(Path(s).resolve()) if s.endswith(".py") or Path(s).is_file() else s for s in specs]


def plugin_list(plugins: Any, path: Path, what: str) -> list[str]:
    """A suite's or sweep's ``plugins``: module names or ``.py`` files (relative to the file)."""
    need(isinstance(plugins, list) and all(isinstance(p, str) and p for p in plugins), path,
         f"[{what}] plugins={plugins!r} must be a list of module names or .py files")
    return [str((path.parent / p).resolve()) if p.endswith(".py") else p for p in plugins]


def check_name(name: Any, path: Path, what: str) -> str:
    """A suite's or sweep's ``name``: it names a directory under results/, so a plain non-empty name of
    printable characters (no NUL byte, newline or other control character, no path separator)."""
    ok = (isinstance(name, str) and name.strip() and name not in (".", "..") and "/" not in name
          and "\\" not in name and name.isprintable())
    need(bool(ok), path, f"[{what}] name={name!r} must be a non-empty name without '/', '\\', a newline, a NUL "
                         "byte or another control character (it names the results directory)")
    return name


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = get_type_hints(TrainConfig)
#: Config keys that do not change what a run computes (left out of its digest).
RUN_ONLY = frozenset(name for name, f in FIELDS.items() if f.metadata.get("run_only"))
#: Keys left out of the digest while they hold their default (keys added after runs were made, so
#: those runs keep their digests).
OMIT_DEFAULT = {name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for name, f in FIELDS.items() if f.metadata.get("omit_default")}
#: Config keys that hold option tables, and the prefix that sets one option: ``env.fast=true``,
#: ``scheme.kl_threshold=0.02``, ``network.layer_norm=false``. (``network`` is also the key naming the
#: network: ``network = "mlp"`` names it, ``network.NAME = value`` or a ``network = {...}`` table sets
#: its options.)
TABLES = {"env": "env", "scheme": "scheme_options", "network": "network_options"}


def field_help() -> dict[str, str]:
    """Help text of every field with its default, for the CLI."""
    def default(f: Any) -> Any:
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(value, list):
            return ",".join(str(v) for v in value) or "(none)"
        if isinstance(value, dict):
            return "(none)" if not value else value
        return "(none)" if value == "" else value
    return {name: f"{f.metadata['help']} [default: {default(f)}]" for name, f in FIELDS.items()}


def apply_override(cfg: TrainConfig, key: str, value: Any) -> None:
    """Set one field, ``env.NAME`` task option, ``scheme.NAME`` scheme option or ``network.NAME`` network
    option from a value; fields are type-checked here, options when the run is resolved against the
    task, scheme and network (they know their options)."""
    key = key.strip()
    prefix, dot, name = key.partition(".")
    if dot and prefix in TABLES:
        if not name:
            raise HarnessError(f"empty {prefix} option name in {key!r} (write {prefix}.NAME=value)")
        getattr(cfg, TABLES[prefix])[name] = value
        return
    if key in TABLES and isinstance(value, dict):  # TOML's dotted keys: scheme.kl_threshold = 0.02
        getattr(cfg, TABLES[key]).update(value)
        return
    if key in FIELDS and _HINTS[key] is dict:  # env, scheme_options, network_options, network_legacy
        if not isinstance(value, dict):
            raise HarnessError(f"{key}={value!r} must be a table of options")
        getattr(cfg, key).update(value)
        return
    if key not in FIELDS:
        import difflib
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise HarnessError(f"unknown option {key!r}{hint}; known: {', '.join(FIELDS)}")
    typ = _HINTS[key]
    if typ is list:
        item = FIELDS[key].metadata.get("items", int)
        example = "tensorboard,mlflow" if item is str else "128,128"
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace("[", "").replace("]", "").split(",") if p.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            raise HarnessError(f"{key}={value!r} is not a list of {item.__name__}s (e.g. {example})")
        if item is str:  # accept the TOML-looking form too: loggers=["tensorboard", "wandb"]
            parts = [p.strip().strip("'\"").strip() if isinstance(p, str) else p for p in parts]
        value = [coerce(key, p, item) for p in parts]
    else:
        value = coerce(key, value, typ)
    setattr(cfg, key, value)


def _flatten(config: dict[str, Any]) -> dict[str, str]:
    """``{"lr": 0.001, "env": {"continuous": True}}`` -> ``{"lr": "0.001", "env.continuous": "true"}``."""
    flat: dict[str, str] = {}
    prefixes = {table: prefix for prefix, table in TABLES.items()}
    for key, value in config.items():
        if key in prefixes and isinstance(value, dict):
            flat.update({f"{prefixes[key]}.{k}": json.dumps(v, sort_keys=True) for k, v in value.items()})
        else:
            flat[key] = json.dumps(value, sort_keys=True)
    return flat


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The keys on which two configs (as :meth:`TrainConfig.to_dict` gives them) differ, with both
    values: ``lr 0.0005 -> 0.001, steps 1000 -> 2000`` (``(unset)`` where a key is missing)."""
    a, b = (_flatten(comparable(c)) for c in (old, new))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k} {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in keys) or "(no key differs)"


def parse_set(items: list[str], flag: str = "--set") -> list[tuple[str, str]]:
    """Split ``key=value`` strings from ``--set`` (or another ``flag``)."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise HarnessError(f"{flag} {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        pairs.append((key, value))
    return pairs


#: The deepest nesting of arrays and tables a suite, sweep or config file may have. The harness's own
#: files nest four levels at most; a deeper file is refused before any code walks it recursively.
MAX_TOML_DEPTH = 32


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply ``value``'s lists and dicts nest (a scalar is 0), counted without recursion and
    stopping once past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's contents; a missing file, bad TOML or arrays and tables nested deeper than
    :data:`MAX_TOML_DEPTH` are a one-line error naming ``what`` it is."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{what} file {str(path)!r} does not exist")
    too_deep = (f"{path}: arrays or tables nested more than {MAX_TOML_DEPTH} levels deep; a {what} file "
                "nests a few levels at most")
    try:
        data = tomllib.loads(path.read_text())
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not a text file (a {what} file is TOML text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # the parser recurses once per level
        raise HarnessError(too_deep) from None
    if nesting_depth(data, MAX_TOML_DEPTH) > MAX_TOML_DEPTH:
        raise HarnessError(too_deep)
    return data


def need(cond: bool, path: Path, message: str) -> None:
    """Raise a one-line error about file ``path`` unless ``cond``."""
    if not cond:
        raise HarnessError(f"{path}: {message}")


def seed_list(seeds: Any, path: Path, where: str, first: int = 1) -> list[int]:
    """A suite's or sweep's ``seeds``: a count N (seeds ``first`` .. ``first + N - 1``, at most
    :data:`MAX_SEED_COUNT`) or a list of seeds, each from 0 to :data:`MAX_SEED`, none twice. The count
    is bounded before any list is made."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        need(1 <= seeds <= MAX_SEED_COUNT, path, f"{where} seeds={seeds} must be a count from 1 to "
                                                  f"{MAX_SEED_COUNT}, or a list of seeds")
        seeds = list(range(first, first + seeds))
    ok = isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    need(bool(ok), path, f"{where} seeds={seeds!r} must be a count or a non-empty list of integers")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    need(not bad, path, f"{where} seed {bad[0] if bad else 0} must be from 0 to {MAX_SEED}")
    need_unique(seeds, path, f"{where} seeds")
    return seeds


def need_unique(values: list[Any], path: Path, what: str) -> None:
    """Refuse a list that names something twice (two runs would write one directory)."""
    seen: set[Any] = set()
    dup = [v for v in values if v in seen or seen.add(v)]
    if dup:
        raise HarnessError(f"{path}: {what} lists {dup[0]!r} more than once; each may appear once "
                           "(two runs would write the same run directory)")


def read_spec_file(path: Path, what: str, tables: set[str], main_keys: set[str],
                   required: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A suite or sweep file: only the known ``tables``, a ``[<what>]`` table with only ``main_keys``
    and every ``required`` key. Returns the whole file and its ``[<what>]`` table."""
    data = read_toml(path, what)
    unknown = set(data) - tables
    need(not unknown, path, f"unknown table(s) {sorted(unknown)}; allowed: {sorted(tables)}")
    main = data.get(what)
    need(isinstance(main, dict), path, f"missing [{what}] table")
    unknown = set(main) - main_keys
    need(not unknown, path, f"unknown [{what}] key(s) {sorted(unknown)}; allowed: {sorted(main_keys)}")
    for key in required:
        need(key in main, path, f"[{what}] needs {key!r}")
    return data, main


def load_overrides_file(path: str | Path) -> list[tuple[str, Any]]:
    """Config overrides from a TOML file of ``key = value`` lines (an ``[env]`` table sets task
    options), such as the ``best.toml`` a sweep writes. Keys are checked when the config is built."""
    data = read_toml(path, "config")
    for key in data:
        if key not in FIELDS and key.partition(".")[0] not in TABLES:
            raise HarnessError(f"{path}: unknown option {key!r}; known: {', '.join(FIELDS)}, env.NAME, scheme.NAME, "
                               "network.NAME")
    return list(data.items())


def build_config(overrides: dict[str, Any] | list[tuple[str, Any]] = ()) -> TrainConfig:
    """A validated config from defaults plus overrides (applied in order)."""
    cfg = TrainConfig()
    items = overrides.items() if isinstance(overrides, dict) else overrides
    for key, value in items:
        apply_override(cfg, key, value)
    return cfg.validate()


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with :meth:`TrainConfig.to_dict`."""
    return build_config(list(data.items()))

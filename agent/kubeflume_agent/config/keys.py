"""Typed configuration keys: each component declares the keys it reads, with Flume's defaults.

A component declares its keys once, as the fields of a frozen dataclass (`port: int = key("port",
port_number, required=True)`); the same declaration validates a config (every problem at once),
builds the typed config a component reads (`config.port`), and documents the component. Values
arrive as strings, exactly as in a flume.conf.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args, overload


class InvalidValue(ValueError):
    """A value that does not parse; its message is shown to the user as is."""


class InvalidSetting(ValueError):
    """Settings a component cannot be built from; `problems` are (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))


def integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidValue(f"expected a whole number, got {text!r}") from None


def positive_integer(text: str) -> int:
    value = integer(text)
    if value <= 0:
        raise InvalidValue(f"expected a number above 0, got {text!r}")
    return value


def non_negative_integer(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise InvalidValue(f"expected 0 or more, got {text!r}")
    return value


def port_number(text: str) -> int:
    value = integer(text)
    if not 0 <= value <= 65535:
        raise InvalidValue(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise InvalidValue(f"expected a number, got {text!r}") from None


def positive_number(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise InvalidValue(f"expected a number above 0, got {text!r}")
    return value


def boolean(text: str) -> bool:
    """Flume reads booleans with Boolean.parseBoolean, but a typo there silently means false;
    we accept the usual spellings and reject the rest."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise InvalidValue(f"expected true or false, got {text!r}")


def charset(text: str) -> str:
    """A config value naming a charset, normalised (`UTF-8` -> `utf-8`)."""
    try:
        return codecs.lookup(text.strip()).name
    except LookupError:
        raise InvalidValue(f"unknown charset {text!r}") from None


def word_list(text: str) -> list[str]:
    """A whitespace-separated list, as Flume's `channels`, `sinks`, `interceptors`..."""
    return text.split()


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def one_of(*choices: str, case_sensitive: bool = False) -> Callable[[str], str]:
    """A value from a fixed set; returned lower-cased unless `case_sensitive`."""

    def parse(text: str) -> str:
        value = text.strip() if case_sensitive else text.strip().lower()
        allowed = choices if case_sensitive else tuple(c.lower() for c in choices)
        if value not in allowed:
            raise InvalidValue(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    parse.__name__ = "one of " + "|".join(choices)
    return parse


T = TypeVar("T")


@dataclass(frozen=True)
class Key(Generic[T]):
    """One configuration key of a component, whose values `parse` makes a T.

    `prefix=True` declares a family of keys (`mapping.` covers `mapping.CA`, `mapping.NY`...);
    its field in the typed config is a dict of suffix -> parsed value.
    """

    name: str
    parse: Callable[[str], T]
    default: T | None = None
    required: bool = False
    prefix: bool = False
    doc: str = ""

    def matches(self, key: str) -> bool:
        return key.startswith(self.name) if self.prefix else key == self.name


@dataclass(frozen=True)
class Problem:
    """A problem found while resolving keys; the config model turns it into a ConfigError."""

    key: str
    message: str
    severity: str = "error"


KEY = "flume_key"  # where a config field keeps its Key


@overload
def key(name: str, *, default: str | None = None, required: bool = False, doc: str = "") -> str: ...


@overload
def key(name: str, parse: Callable[[str], T], default: T | None = None, *, required: bool = False,
        doc: str = "") -> T: ...


@overload
def key(name: str, parse: Callable[[str], T], *, prefix: Literal[True], doc: str = "") -> dict[str, T]: ...


def key(name: str, parse: Callable[[str], Any] = str, default: Any = None, *, required: bool = False,
        prefix: bool = False, doc: str = "") -> Any:
    """A field of a component's typed config: the key's Flume spelling, parser, default and doc.

    The field's type is what `parse` returns, so mypy holds the declaration to it.
    `prefix=True` declares a family of keys (`serializer.` covers `serializer.appendNewline`...);
    the field then holds a dict of suffix -> parsed value.
    """
    return declared_key(Key(name, parse, default, required=required, prefix=prefix, doc=doc))


def declared_key(declared: Key[T]) -> T:
    """A field of a typed config for a Key declared once and shared by several components
    (`reusePort`, `readTimeout`...)."""
    shared: Any
    if declared.prefix:
        shared = field(default_factory=dict, metadata={KEY: declared})
    elif isinstance(declared.default, list):  # each config gets its own copy
        shared = field(default_factory=declared.default.copy, metadata={KEY: declared})
    else:
        shared = field(default=declared.default, metadata={KEY: declared})
    return shared  # a dataclass field standing for its value, as dataclasses.field() does


@dataclass(frozen=True)
class Config:
    """Base of a component's typed config: a frozen dataclass whose fields are declared with `key()`.

    The declaration is the one place a key lives: `keys()` gives what validation, the operator and
    docs/components.md read, `resolve()` the values a component is built from (`config.batch_size`).
    Checks across keys are methods of the config (`problems`), as is what the operator needs to
    know about a component (`storage_paths`).
    """

    BATCH_SIZE: ClassVar[str] = "batch_size"  # the field checked against the channels' transactionCapacity

    @classmethod
    def keys(cls) -> tuple[Key, ...]:
        return tuple(declared.metadata[KEY] for declared in _declared_fields(cls))

    @classmethod
    def batch_size_key(cls) -> str | None:
        """The Flume name of the batch-size key, if this component has one."""
        return next((f.metadata[KEY].name for f in _declared_fields(cls) if f.name == cls.BATCH_SIZE), None)

    def batch_size_wanted(self) -> int | None:
        """The batch size this config asks for (its `batch_size` field), if it declares one."""
        value = getattr(self, self.BATCH_SIZE, None)
        return value if isinstance(value, int) else None

    def problems(self) -> list[tuple[str, str]]:
        """Checks across keys, beyond what each key's parser sees: [(key, message)]."""
        return []

    def storage_paths(self) -> list[str]:
        """Directories the component keeps state in (the operator gives them persistent storage)."""
        return []


C = TypeVar("C", bound=Config)


def _declared_fields(cls: type) -> list[Field[Any]]:
    return [declared for declared in fields(cls) if KEY in declared.metadata]


def resolve(config_class: type[C], params: Mapping[str, str]) -> tuple[C, list[Problem]]:
    """Parse `params` against the keys `config_class` declares: (its config, every problem found).

    A key missing or not parsing keeps its default, so the config is whole even when problems
    are found; a component is only built from one without errors.
    """
    declared = [(f.metadata[KEY], f.name) for f in _declared_fields(config_class)]
    values: dict[str, Any] = {name: {} for key, name in declared if key.prefix}
    problems = [Problem(key.name, "is required") for key, _ in declared if key.required and key.name not in params]
    for name, raw in params.items():
        key, field_name = next(((k, f) for k, f in declared if k.matches(name)), (None, ""))
        if key is None:
            problems.append(Problem(name, "unknown key (ignored, as Flume does)", "warning"))
            continue
        if "${" in raw:
            problems.append(Problem(name, f"{raw!r}: a ${{VAR}} is taken from the environment when the agent "
                                          "starts; one left unresolved is used as written", "warning"))
        try:
            value = key.parse(raw)
        except InvalidValue as error:
            if "${" not in raw:  # else it is checked once the environment has filled it in
                problems.append(Problem(name, str(error)))
            continue
        if key.prefix:
            values[field_name][name[len(key.name):]] = value
        else:
            values[field_name] = value
    return config_class(**values), problems


def config_of(config_class: type[C], params: Mapping[str, str]) -> C:
    """The config of `params`, or InvalidSetting naming every error (warnings are left to validation)."""
    config, problems = resolve(config_class, params)
    errors = [(p.key, p.message) for p in problems if p.severity == "error"] or config.problems()
    if errors:
        raise InvalidSetting(errors)
    return config


class Configurable(Generic[C]):
    """A component built from its typed config: `class NullSink(Sink[NullSinkConfig])`, read `self.config`.

    The type argument is the config class (`config_class`): its declaration is what validation,
    the operator and docs/components.md read, so a key is written down once.
    """

    config_class: ClassVar[type[Config]] = Config
    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = _config_argument(cls)
        if declared is not None:
            cls.config_class = declared

    @classmethod
    def config_problems(cls, config: C) -> list[tuple[str, str]]:
        """Problems of a config that resolved without errors: its own checks, and any the
        component adds (say, by building what the config describes)."""
        return config.problems()


def _config_argument(cls: type) -> type[Config] | None:
    """The config class a component names as its base's type argument (`Sink[NullSinkConfig]`)."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        for argument in get_args(base):
            if isinstance(argument, type) and issubclass(argument, Config):
                return argument
    return None

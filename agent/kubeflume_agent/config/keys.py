"""Typed configuration keys: each component declares the keys it reads, with Flume's defaults.

A component lists its keys once (`keys = (Key("port", integer, required=True), ...)`); the same
declaration validates a config (every problem at once), fills in defaults at start-up, and documents
the component. Values arrive as strings, exactly as in a flume.conf.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, Self


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


@dataclass(frozen=True)
class Key:
    """One configuration key of a component.

    `prefix=True` declares a family of keys (`mapping.` covers `mapping.CA`, `mapping.NY`...);
    its value in the resolved settings is a dict of suffix -> parsed value.
    """

    name: str
    parse: Callable[[str], Any] = str
    default: Any = None
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


class Settings(dict):
    """Resolved settings of one component: every declared key with its parsed value or default.

    Attribute access is not offered on purpose: keys keep Flume's spelling (`max-line-length`),
    so `settings["max-line-length"]` reads like the flume.conf it came from.
    """


def resolve(keys: Iterable[Key], params: Mapping[str, str]) -> tuple[Settings, list[Problem]]:
    """Parse `params` against `keys`: (settings with defaults filled in, every problem found)."""
    keys = tuple(keys)
    settings = Settings()
    problems: list[Problem] = []
    for key in keys:
        if key.prefix:
            settings[key.name] = {}
        else:
            settings[key.name] = key.default
            if key.required and key.name not in params:
                problems.append(Problem(key.name, "is required"))
    for name, raw in params.items():
        declared = next((k for k in keys if k.matches(name)), None)
        if declared is None:
            problems.append(Problem(name, "unknown key (ignored, as Flume does)", "warning"))
            continue
        if "${" in raw:
            problems.append(Problem(name, f"{raw!r}: a ${{VAR}} is taken from the environment when the agent "
                                          "starts; one left unresolved is used as written", "warning"))
        try:
            value = declared.parse(raw)
        except InvalidValue as error:
            if "${" not in raw:  # else it is checked once the environment has filled it in
                problems.append(Problem(name, str(error)))
            continue
        if declared.prefix:
            settings[declared.name][name[len(declared.name):]] = value
        else:
            settings[name] = value
    return settings, problems


KEY = "flume_key"  # where a config field keeps its Key


def key(name: str, parse: Callable[[str], Any] = str, default: Any = None, *, required: bool = False,
        prefix: bool = False, doc: str = "") -> Any:
    """A field of a component's typed config: the key's Flume spelling, parser, default and doc.

    `prefix=True` declares a family of keys (`serializer.` covers `serializer.appendNewline`...);
    the field then holds a dict of suffix -> parsed value.
    """
    return declared_key(Key(name, parse, default, required=required, prefix=prefix, doc=doc))


def declared_key(declared: Key) -> Any:
    """A field of a typed config for a Key declared once and shared by several components
    (`reusePort`, `readTimeout`...)."""
    if declared.prefix:
        return field(default_factory=dict, metadata={KEY: declared})
    if isinstance(declared.default, list):  # each config gets its own copy
        return field(default_factory=declared.default.copy, metadata={KEY: declared})
    return field(default=declared.default, metadata={KEY: declared})


@dataclass(frozen=True)
class Config:
    """Base of a component's typed config: a frozen dataclass whose fields are declared with `key()`.

    The declaration is the one place a key lives: `keys()` gives what validation, the operator and
    docs/components.md read, `from_settings()` the values a component reads (`config.batch_size`).
    """

    BATCH_SIZE: ClassVar[str] = "batch_size"  # the field checked against the channels' transactionCapacity

    @classmethod
    def keys(cls) -> tuple[Key, ...]:
        return tuple(declared.metadata[KEY] for declared in _declared_fields(cls))

    @classmethod
    def batch_size_key(cls) -> str | None:
        """The Flume name of the batch-size key, if this component has one."""
        return next((f.metadata[KEY].name for f in _declared_fields(cls) if f.name == cls.BATCH_SIZE), None)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Self:
        """The typed config of resolved settings (see `resolve`); keys not given take their defaults."""
        values = {f.name: settings[f.metadata[KEY].name] for f in _declared_fields(cls)
                  if f.metadata[KEY].name in settings}
        return cls(**values)


def _declared_fields(cls: type) -> list[Field[Any]]:
    return [declared for declared in fields(cls) if KEY in declared.metadata]


class Configurable:
    """A component whose keys come from its typed config: set `config_class`, read `self.config`.

    `keys` (what validation, the operator and the docs read) and `batch_size_key` are taken from
    the declaration, so a key is written down once.
    """

    keys: ClassVar[tuple[Key, ...]] = ()
    batch_size_key: ClassVar[str | None] = None
    config_class: ClassVar[type[Config] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = vars(cls).get("config_class")
        if declared is not None:
            cls.keys = declared.keys()
            cls.batch_size_key = declared.batch_size_key()

"""Java regular expressions and Joda-Time date patterns, given the same meaning in Python.

Flume's configs carry java.util.regex patterns, Matcher.replaceAll replacements and Joda-Time
date patterns (interceptors, taildir's multiline start); this module translates them for `re` and
`strptime`, or refuses them with an InvalidSetting naming the key.
"""

from __future__ import annotations

import datetime
import re
import warnings

from kubeflume_agent.config.keys import InvalidSetting

# --- Java regular expressions ------------------------------------------------------------------
#
# Flume's patterns are java.util.regex patterns, which Python's `re` mostly reads alike. Handled:
# `\d \w \s \b` and case folding are ASCII-only in Java (re.ASCII); `(?<name>...)` and `\k<name>`;
# `\Q...\E` quoting; `\z` and Java's `\Z` (end, or before a final line break); `\h`; the POSIX and
# ASCII classes `\p{Alpha}`, `\P{Digit}`... Java-only constructs Python would misread (nested
# classes, `&&` intersections) are refused. Not handled: Java's `.` also stops at `\r`, `\u0085`,
# `\u2028`, `\u2029` (Python's only at `\n`), and inline flags in mid-pattern are refused by Python.

_ASCII_CLASSES = {
    "Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7f", "Alpha": "a-zA-Z", "Digit": "0-9",
    "Alnum": "a-zA-Z0-9", "Punct": "!-/:-@\\[-`{-~", "Graph": "!-~", "Print": " -~", "Blank": " \\t",
    "Cntrl": "\\x00-\\x1f\\x7f", "XDigit": "0-9a-fA-F", "Space": " \\t\\n\\x0b\\f\\r",
}
DIGITS = "0123456789"
_HORIZONTAL_SPACE = " \\t\\xa0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000"


def _java_class(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    """Translate `\\p{Name}` / `\\P{Name}` starting at `at`: (Python text, index after it)."""
    close = pattern.find("}", at + 3)
    name = pattern[at + 3:close] if close > 0 else ""
    body = _ASCII_CLASSES.get(name.removeprefix("Is"))
    negated = pattern[at + 1] == "P"
    if body is None:
        raise re.error(f"unsupported character class \\{pattern[at + 1]}{{{name}}} (supported: "
                       f"{', '.join(_ASCII_CLASSES)})")
    if in_class and negated:
        raise re.error(f"\\P{{{name}}} inside [...] is not supported; use [^...] instead")
    if in_class:
        return body, close + 1
    return f"[{'^' if negated else ''}{body}]", close + 1


def _java_escape(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    """Translate the escape starting with the backslash at `at`: (Python text, index after it)."""
    letter = pattern[at + 1] if at + 1 < len(pattern) else ""
    if letter == "Q":
        end = pattern.find("\\E", at + 2)
        literal = pattern[at + 2:] if end < 0 else pattern[at + 2:end]
        return re.escape(literal), len(pattern) if end < 0 else end + 2
    if letter in ("p", "P") and pattern[at + 2:at + 3] == "{":
        return _java_class(pattern, at, in_class)
    if letter == "k" and pattern[at + 2:at + 3] == "<":
        close = pattern.find(">", at + 3)
        if close > 0:
            return f"(?P={pattern[at + 3:close]})", close + 1
    if letter == "h":
        return (_HORIZONTAL_SPACE if in_class else f"[{_HORIZONTAL_SPACE}]"), at + 2
    if letter == "z":
        return "\\Z", at + 2
    if letter == "Z":
        return "(?=\\n?\\Z)", at + 2
    return pattern[at:at + 2], at + 2


def translate_java_regex(pattern: str) -> str:
    """A Python `re` pattern equivalent to the java.util.regex `pattern` (see the notes above)."""
    out: list[str] = []
    at, class_start = 0, -1
    while at < len(pattern):
        char = pattern[at]
        if char == "\\":
            text, at = _java_escape(pattern, at, class_start >= 0)
            out.append(text)
            continue
        if class_start >= 0:
            first = class_start + (2 if pattern[class_start + 1:class_start + 2] == "^" else 1)
            if char == "]" and at > first:
                class_start = -1
            elif char == "[":  # Java: a nested class (a union); Python: a literal "["
                raise re.error(f"nested character class at position {at} is not supported; "
                               "list its members in the enclosing class instead")
        elif char == "[":
            class_start = at
        elif pattern.startswith("(?<", at) and pattern[at + 3:at + 4] not in ("=", "!"):
            out.append("(?P<")
            at += 3
            continue
        out.append(char)
        at += 1
    return "".join(out)


def compile_java_regex(pattern: str, key: str) -> re.Pattern[str]:
    """Compile a Java regex, or raise InvalidSetting naming `key`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # Java's nested classes and `&&`
            return re.compile(translate_java_regex(pattern), re.ASCII)
    except (re.error, FutureWarning) as error:
        raise InvalidSetting([(key, f"invalid regular expression {pattern!r}: {error}")]) from None


def java_replacement(template: str, regex: re.Pattern[str], key: str) -> str:
    """A `re.sub` template for a Java Matcher.replaceAll replacement: `$1`, `${name}`, `\\$`.

    As in Java, `$12` means group 12 only if the pattern has that many groups (else group 1 and
    a literal 2); a reference to a missing group is an error here rather than at the first event.
    """
    out: list[str] = []
    at = 0
    while at < len(template):
        char = template[at]
        if char == "\\":
            if at + 1 == len(template):
                raise InvalidSetting([(key, "character to be escaped is missing at the end")])
            out.append("\\\\" if template[at + 1] == "\\" else template[at + 1])
            at += 2
        elif char == "$":
            reference, at = _group_reference(template, at + 1, regex, key)
            out.append(f"\\g<{reference}>")
        else:
            out.append(char)
            at += 1
    return "".join(out)


def _group_reference(template: str, at: int, regex: re.Pattern[str], key: str) -> tuple[str, int]:
    if template[at:at + 1] == "{":
        close = template.find("}", at)
        name = template[at + 1:close] if close > 0 else ""
        if name not in regex.groupindex:
            raise InvalidSetting([(key, f"no group named {{{name}}} in the search pattern")])
        return name, close + 1
    if at == len(template) or template[at] not in DIGITS:  # ("" is in every string)
        raise InvalidSetting([(key, "illegal group reference: '$' must be followed by a group number or "
                                    "{name}; write \\$ for a literal dollar sign")])
    group = int(template[at])
    at += 1
    while at < len(template) and template[at] in DIGITS and group * 10 + int(template[at]) <= regex.groups:
        group = group * 10 + int(template[at])
        at += 1
    if group > regex.groups:
        raise InvalidSetting([(key, f"no group {group} in the search pattern (it has {regex.groups})")])
    return str(group), at


# --- Joda-Time patterns ----------------------------------------------------------------------

# Joda letter -> strptime directive, by run length (the last entry covers longer runs).
_JODA_LETTERS: dict[str, tuple[str, ...]] = {
    "y": ("%Y", "%y", "%Y"), "Y": ("%Y", "%y", "%Y"), "M": ("%m", "%m", "%b", "%B"), "d": ("%d",),
    "H": ("%H",), "h": ("%I",), "m": ("%M",), "s": ("%S",), "S": ("%f",), "a": ("%p",),
    "Z": ("%z", "%z"), "E": ("%a", "%a", "%a", "%A"), "D": ("%j",),
}
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MILLISECOND = datetime.timedelta(milliseconds=1)


def joda_to_strptime(pattern: str) -> tuple[str, bool]:
    """(strptime format, whether the pattern has a year) for a Joda DateTimeFormat pattern.

    Raises ValueError for letters strptime has no directive for.
    """
    out: list[str] = []
    has_year = False
    at = 0
    while at < len(pattern):
        char = pattern[at]
        run = len(pattern[at:]) - len(pattern[at:].lstrip(char))
        if char == "'":
            literal, at = _joda_quoted(pattern, at)
            out.append(literal.replace("%", "%%"))
            continue
        if char.isascii() and char.isalpha():
            directives = _JODA_LETTERS.get(char)
            if directives is None or (char == "Z" and run > 2):
                raise ValueError(f"pattern letter {char * run!r} is not supported (supported: "
                                 f"{' '.join(_JODA_LETTERS)}, 'quoted text')")
            out.append(directives[min(run, len(directives)) - 1])
            has_year = has_year or char in "yY"
            at += run
            continue
        out.append("%%" if char == "%" else char)
        at += 1
    return "".join(out), has_year


def _joda_quoted(pattern: str, at: int) -> tuple[str, int]:
    """Text in single quotes ('' is a quote): (literal, index after the closing quote)."""
    if pattern.startswith("''", at):
        return "'", at + 2
    literal: list[str] = []
    at += 1
    while at < len(pattern):
        if pattern.startswith("''", at):
            literal.append("'")
            at += 2
        elif pattern[at] == "'":
            return "".join(literal), at + 1
        else:
            literal.append(pattern[at])
            at += 1
    raise ValueError("unterminated quote in pattern")


class MillisSerializer:
    """Flume's RegexExtractorInterceptorMillisSerializer: a date in a Joda pattern -> epoch millis.

    Dates without a zone are in the local zone (Flume: the JVM's default zone); a pattern without
    a year parses as 1970, as Joda does (strptime alone would say 1900).
    """

    def __init__(self, pattern: str) -> None:
        self.format, self._has_year = joda_to_strptime(pattern)
        if not self._has_year:
            self.format = "%Y " + self.format

    def __call__(self, value: str) -> str:
        parsed = datetime.datetime.strptime(value if self._has_year else "1970 " + value, self.format)
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()
        return str((parsed - EPOCH) // MILLISECOND)

"""Interceptors (reference a.6): each one's keys, defaults and behaviour, and its config problems."""

import socket
import textwrap
import time
import uuid

import pytest

from kubeflume_agent.config.keys import InvalidSetting, resolve
from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.config.validation import validate
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.interceptors import builtin as interceptors
from kubeflume_agent.protocols.java_patterns import MillisSerializer

MILLIS = "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer"
# The zone of the Flume guide's regex_extractor example (2012-10-18 18:47 -> 1350611220000), as a
# POSIX TZ string so that it needs no tz database.
PACIFIC = "PST8PDT,M3.2.0,M11.1.0"


def build(type_name: str, params: dict[str, str] | None = None):
    """An interceptor as the agent builds it: flume.conf strings resolved through its declared keys."""
    interceptor_class = lookup("interceptor", type_name)
    settings, problems = resolve(interceptor_class.config_class, params or {})
    assert not [p for p in problems if p.severity == "error"], problems
    assert interceptor_class.config_problems(settings) == []
    return interceptor_class(settings)


def problem_keys(type_name: str, params: dict[str, str]) -> list[str]:
    """The keys named by every error found in `params`: while resolving, then by config_problems."""
    interceptor_class = lookup("interceptor", type_name)
    settings, problems = resolve(interceptor_class.config_class, params)
    errors = [p.key for p in problems if p.severity == "error"]
    if errors:
        return errors
    return [key for key, _ in interceptor_class.config_problems(settings)]


def event(body: str = "", **headers: str) -> Event:
    return Event(body.encode(), dict(headers))


@pytest.fixture
def local_zone(monkeypatch):
    """Run with the local time zone set to `zone` (what Flume calls the JVM's default zone)."""

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


# --- registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "class_name"), [
    ("timestamp", "TimestampInterceptor"),
    ("host", "HostInterceptor"),
    ("static", "StaticInterceptor"),
    ("remove_header", "RemoveHeaderInterceptor"),
    ("uuid", "UUIDInterceptor"),
    ("search_replace", "SearchReplaceInterceptor"),
    ("regex_filter", "RegexFilteringInterceptor"),
    ("regex_extractor", "RegexExtractorInterceptor"),
    ("org.apache.flume.interceptor.TimestampInterceptor$Builder", "TimestampInterceptor"),
    ("org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder", "UUIDInterceptor"),
    ("org.apache.flume.interceptor.RegexExtractorInterceptor$Builder", "RegexExtractorInterceptor"),
    ("org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder", "SearchReplaceInterceptor"),
])
def test_aliases_and_flume_builder_names_resolve_to_the_interceptor(name, class_name):
    assert lookup("interceptor", name) is getattr(interceptors, class_name)


# --- timestamp -------------------------------------------------------------------------------


def test_timestamp_sets_epoch_millis_read_once_per_batch(monkeypatch):
    readings = iter([1_700_000_000_123_456_789, 1_800_000_000_000_000_000])
    monkeypatch.setattr(interceptors.time, "time_ns", lambda: next(readings))
    batch = [event("a"), event("b"), event("c")]

    assert build("timestamp").intercept(batch) is batch
    assert [e.headers for e in batch] == [{"timestamp": "1700000000123"}] * 3


def test_timestamp_is_the_current_time():
    before = time.time_ns() // 1_000_000
    [stamped] = build("timestamp").intercept([event()])
    after = time.time_ns() // 1_000_000
    assert before <= int(stamped.headers["timestamp"]) <= after


def test_timestamp_overwrites_by_default_and_keeps_with_preserve_existing():
    assert build("timestamp").intercept([event(timestamp="1")])[0].headers["timestamp"] != "1"
    kept, added = build("timestamp", {"preserveExisting": "true"}).intercept([event(timestamp="1"), event()])
    assert kept.headers == {"timestamp": "1"}
    assert added.headers["timestamp"].isdigit()


def test_timestamp_header_name():
    [stamped] = build("timestamp", {"headerName": "ts"}).intercept([event()])
    assert list(stamped.headers) == ["ts"]


def test_timestamp_rejects_a_boolean_it_cannot_read():
    assert problem_keys("timestamp", {"preserveExisting": "maybe"}) == ["preserveExisting"]


# --- host ------------------------------------------------------------------------------------


def test_host_sets_the_ip_address_by_default():
    [stamped] = build("host").intercept([event()])
    assert stamped.headers == {"host": socket.gethostbyname(socket.gethostname())}


def test_host_sets_the_canonical_name_without_use_ip():
    [stamped] = build("host", {"useIP": "false", "hostHeader": "hostname"}).intercept([event()])
    assert stamped.headers == {"hostname": socket.getfqdn()}


def test_host_overwrites_by_default_and_keeps_with_preserve_existing():
    ip = socket.gethostbyname(socket.gethostname())
    assert build("host").intercept([event(host="elsewhere")])[0].headers == {"host": ip}
    kept = build("host", {"preserveExisting": "true"}).intercept([event(host="elsewhere")])[0]
    assert kept.headers == {"host": "elsewhere"}


def test_host_without_a_resolvable_address_passes_events_unchanged(monkeypatch, caplog):
    def unresolvable(name):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(interceptors.socket, "gethostbyname", unresolvable)
    host = build("host")
    batch = [event("x", a="1")]
    assert host.intercept(batch) == [event("x", a="1")]
    assert "could not find the local host address" in caplog.text


# --- static ----------------------------------------------------------------------------------


def test_static_sets_its_key_and_value():
    [stamped] = build("static", {"key": "datacenter", "value": "NEW_YORK"}).intercept([event()])
    assert stamped.headers == {"datacenter": "NEW_YORK"}


def test_static_defaults_are_key_and_value():
    assert build("static").intercept([event()])[0].headers == {"key": "value"}


def test_static_preserves_an_existing_value_by_default():
    params = {"key": "datacenter", "value": "NEW_YORK"}
    kept, added = build("static", params).intercept([event(datacenter="LONDON"), event()])
    assert kept.headers == {"datacenter": "LONDON"}
    assert added.headers == {"datacenter": "NEW_YORK"}
    [replaced] = build("static", {**params, "preserveExisting": "false"}).intercept([event(datacenter="LONDON")])
    assert replaced.headers == {"datacenter": "NEW_YORK"}


# --- remove_header ---------------------------------------------------------------------------


def test_remove_header_with_name_removes_exactly_that_header():
    [stripped] = build("remove_header", {"withName": "secret"}).intercept(
        [event("body", secret="1", secrets="2", Secret="3")])
    assert stripped.headers == {"secrets": "2", "Secret": "3"}
    assert stripped.body == b"body"


def test_remove_header_from_list_with_the_default_separator():
    [stripped] = build("remove_header", {"fromList": "a, b ,c,d"}).intercept(
        [event(a="1", b="2", c="3", d="4", e="5")])
    assert stripped.headers == {"e": "5"}


def test_remove_header_from_list_separator_is_a_regex():
    [stripped] = build("remove_header", {"fromList": "a|b||c", "fromListSeparator": "\\|+"}).intercept(
        [event(a="1", b="2", c="3", **{"a|b": "4"})])
    assert stripped.headers == {"a|b": "4"}


def test_remove_header_matching_needs_the_whole_name_to_match():
    [stripped] = build("remove_header", {"matching": "tmp.*"}).intercept(
        [event(tmp="1", tmpfile="2", xtmp="3", TMP="4")])
    assert stripped.headers == {"xtmp": "3", "TMP": "4"}


def test_remove_header_combines_name_list_and_pattern():
    [stripped] = build("remove_header", {"withName": "a", "fromList": "b,c", "matching": "x\\d+"}).intercept(
        [event(a="1", b="2", c="3", x12="4", x="5", keep="6")])
    assert stripped.headers == {"x": "5", "keep": "6"}


def test_remove_header_without_settings_changes_nothing():
    batch = [event("b", a="1")]
    assert build("remove_header").intercept(batch) == [event("b", a="1")]


def test_remove_header_bad_regexes_are_config_problems():
    assert problem_keys("remove_header", {"matching": "(unclosed"}) == ["matching"]
    assert problem_keys("remove_header", {"fromList": "a,b", "fromListSeparator": "["}) == ["fromListSeparator"]


# --- uuid ------------------------------------------------------------------------------------


def test_uuid_sets_a_distinct_random_uuid_per_event():
    batch = build("uuid").intercept([event(), event(), event()])
    ids = [e.headers["id"] for e in batch]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(value).version == 4 for value in ids)


def test_uuid_header_name_and_prefix():
    [stamped] = build("uuid", {"headerName": "eventId", "prefix": "host7-"}).intercept([event()])
    assert list(stamped.headers) == ["eventId"]
    assert stamped.headers["eventId"].startswith("host7-")
    uuid.UUID(stamped.headers["eventId"].removeprefix("host7-"))


def test_uuid_preserves_an_existing_id_by_default():
    [kept] = build("uuid").intercept([event(id="given")])
    assert kept.headers == {"id": "given"}
    [replaced] = build("uuid", {"preserveExisting": "false"}).intercept([event(id="given")])
    assert replaced.headers["id"] != "given"
    uuid.UUID(replaced.headers["id"])


# --- search_replace --------------------------------------------------------------------------


def search_replace(body: str, **params: str) -> str:
    [edited] = build("search_replace", params).intercept([event(body)])
    return edited.body.decode()


def test_search_replace_with_groups_as_in_the_flume_guide():
    assert search_replace(
        "The quick brown fox jumped over the lazy dog.",
        searchPattern="The quick brown ([a-z]+) jumped over the lazy ([a-z]+)",
        replaceString="The hungry $2 ate the careless $1",
    ) == "The hungry dog ate the careless fox."


def test_search_replace_absent_replace_string_deletes_the_match():
    assert search_replace("avro_src_1 some message", searchPattern="^[A-Za-z0-9_]+") == " some message"


def test_search_replace_replaces_every_match():
    assert search_replace("a1b22c333", searchPattern="\\d+", replaceString="#") == "a#b#c#"


def test_search_replace_empty_matches_as_java_replace_all():
    # Java: "abxd".replaceAll("x*", "-") is "-a-b--d-"
    assert search_replace("abxd", searchPattern="x*", replaceString="-") == "-a-b--d-"


def test_search_replace_group_numbers_beyond_the_group_count_are_literal_digits():
    # Java reads $12 as group 12 only if the pattern has 12 groups; here it is group 1, then "2".
    assert search_replace("ab", searchPattern="(a)(b)", replaceString="$12") == "a2"


def search_replace_settings(*, search: str, replace: str) -> interceptors.SearchReplaceConfig:
    """A config with the values as given, `${...}` included (the config layer treats `${` in a
    flume.conf value as a reference to resolve, so these are set on the typed config directly)."""
    return interceptors.SearchReplaceConfig(search=search, replace=replace)


def test_search_replace_named_groups():
    interceptor = interceptors.SearchReplaceInterceptor(
        search_replace_settings(search="(?<amount>\\d+) (?<unit>\\w+)", replace="${unit}=${amount}"))
    assert interceptor.intercept([event("pay 42 EUR")])[0].body == b"pay EUR=42"


def test_search_replace_backslash_escapes_in_the_replacement():
    assert search_replace("price 42", searchPattern="(\\d+)", replaceString="\\$$1.00") == "price $42.00"
    assert search_replace("a\\b", searchPattern="\\\\", replaceString="\\\\\\\\") == "a\\\\b"
    assert search_replace("x", searchPattern="x", replaceString="\\y\\1") == "y1"


def test_search_replace_unmatched_group_inserts_nothing():
    assert search_replace("b", searchPattern="(a)?b", replaceString="[$1]") == "[]"


def test_search_replace_uses_the_charset_for_the_body():
    interceptor = build("search_replace", {"searchPattern": "é", "replaceString": "e", "charset": "ISO-8859-1"})
    [edited] = interceptor.intercept([Event("café é".encode("latin-1"))])
    assert edited.body == b"cafe e"


def test_search_replace_java_digit_class_is_ascii_only():
    assert search_replace("1\u0663", searchPattern="\\d", replaceString="#") == "#\u0663"


@pytest.mark.parametrize(("params", "key"), [
    ({}, "searchPattern"),  # required
    ({"searchPattern": ""}, "searchPattern"),
    ({"searchPattern": "(unclosed"}, "searchPattern"),
    ({"searchPattern": "[a-z[0-9]]"}, "searchPattern"),  # a Java nested class Python would misread
    ({"searchPattern": "(a)", "replaceString": "$2"}, "replaceString"),
    ({"searchPattern": "(a)", "replaceString": "$x"}, "replaceString"),
    ({"searchPattern": "(a)", "replaceString": "costs 5$"}, "replaceString"),
    ({"searchPattern": "(a)", "replaceString": "ends with \\"}, "replaceString"),
    ({"searchPattern": "a", "charset": "no-such-charset"}, "charset"),
])
def test_search_replace_settings_that_cannot_work_are_config_problems(params, key):
    assert problem_keys("search_replace", params) == [key]


def test_search_replace_unknown_group_name_is_a_config_problem():
    settings = search_replace_settings(search="(?<amount>\\d+)", replace="${missing}")
    [(key, message)] = interceptors.SearchReplaceInterceptor.config_problems(settings)
    assert key == "replaceString"
    assert "{missing}" in message


def test_search_replace_constructor_raises_invalid_setting():
    settings, _ = resolve(interceptors.SearchReplaceInterceptor.config_class, {"searchPattern": "("})
    with pytest.raises(InvalidSetting) as raised:
        interceptors.SearchReplaceInterceptor(settings)
    assert [key for key, _ in raised.value.problems] == ["searchPattern"]


# --- regex_filter ----------------------------------------------------------------------------


def bodies(events: list[Event]) -> list[str]:
    return [e.body.decode() for e in events]


def test_regex_filter_keeps_events_containing_a_match_anywhere():
    batch = [event("error: disk"), event("all fine"), event("an error happened")]
    assert bodies(build("regex_filter", {"regex": "error"}).intercept(batch)) == ["error: disk", "an error happened"]


def test_regex_filter_anchors_still_apply():
    batch = [event("error: disk"), event("an error happened")]
    assert bodies(build("regex_filter", {"regex": "^error"}).intercept(batch)) == ["error: disk"]


def test_regex_filter_exclude_events_drops_the_matches():
    batch = [event("DEBUG x"), event("INFO y"), event("xDEBUG")]
    kept = build("regex_filter", {"regex": "DEBUG", "excludeEvents": "true"}).intercept(batch)
    assert bodies(kept) == ["INFO y"]


def test_regex_filter_default_keeps_everything():
    batch = [event("a"), event(""), Event(b"\xff\xfe")]
    assert build("regex_filter").intercept(batch) == batch


def test_regex_filter_bad_regex_is_a_config_problem():
    assert problem_keys("regex_filter", {"regex": "*a"}) == ["regex"]


# --- regex_extractor -------------------------------------------------------------------------


def test_regex_extractor_flume_guide_example():
    extractor = build("regex_extractor", {
        "regex": "(\\d):(\\d):(\\d)",
        "serializers": "s1 s2 s3",
        "serializers.s1.name": "one",
        "serializers.s2.name": "two",
        "serializers.s3.name": "three",
    })
    [extracted] = extractor.intercept([event("1:2:3.4foobar5")])
    assert extracted.headers == {"one": "1", "two": "2", "three": "3"}
    assert extracted.body == b"1:2:3.4foobar5"


def test_regex_extractor_millis_serializer_flume_guide_example(local_zone):
    local_zone(PACIFIC)
    extractor = build("regex_extractor", {
        "regex": "^(?:\\n)?(\\d\\d\\d\\d-\\d\\d-\\d\\d\\s\\d\\d:\\d\\d)",
        "serializers": "s1",
        "serializers.s1.type": MILLIS,
        "serializers.s1.name": "timestamp",
        "serializers.s1.pattern": "yyyy-MM-dd HH:mm",
    })
    [extracted] = extractor.intercept([event("2012-10-18 18:47:57,614 some log line")])
    assert extracted.headers == {"timestamp": "1350611220000"}


def test_millis_serializer_uses_the_local_zone_unless_the_pattern_has_one(local_zone):
    local_zone("UTC0")
    assert MillisSerializer("yyyy-MM-dd HH:mm:ss.SSS")("2012-10-19 01:47:00.250") == "1350611220250"
    local_zone(PACIFIC)
    assert MillisSerializer("yyyy-MM-dd HH:mm:ss.SSS")("2012-10-18 18:47:00.250") == "1350611220250"
    assert MillisSerializer("yyyy-MM-dd'T'HH:mm Z")("2012-10-19T01:47 +0000") == "1350611220000"


def test_millis_serializer_without_a_year_parses_as_1970(local_zone):
    local_zone("UTC0")
    assert MillisSerializer("MM-dd HH:mm")("01-02 00:00") == str(24 * 3600 * 1000)


def test_regex_extractor_unparsable_date_leaves_the_header_unset(caplog):
    extractor = build("regex_extractor", {
        "regex": "^(\\S+) (\\S+)",
        "serializers": "s1 s2",
        "serializers.s1.type": MILLIS,
        "serializers.s1.name": "timestamp",
        "serializers.s1.pattern": "yyyy-MM-dd",
        "serializers.s2.name": "level",
    })
    [extracted] = extractor.intercept([event("yesterday WARN")])
    assert extracted.headers == {"level": "WARN"}
    assert "cannot serialize 'yesterday'" in caplog.text


def test_regex_extractor_uses_the_first_match_and_skips_unlisted_groups():
    extractor = build("regex_extractor", {
        "regex": "(\\w+)=(\\w+)", "serializers": "s1", "serializers.s1.name": "key",
    })
    [extracted] = extractor.intercept([event("a=1 b=2")])
    assert extracted.headers == {"key": "a"}


def test_regex_extractor_skips_groups_that_took_no_part_in_the_match():
    extractor = build("regex_extractor", {
        "regex": "(x)?(y)", "serializers": "s1 s2",
        "serializers.s1.name": "first", "serializers.s2.name": "second",
    })
    [extracted] = extractor.intercept([event("y")])
    assert extracted.headers == {"second": "y"}


def test_regex_extractor_passes_events_without_a_match_unchanged():
    extractor = build("regex_extractor", {"regex": "(\\d+)", "serializers": "s1", "serializers.s1.name": "n"})
    batch = [event("no digits", a="1"), event("42")]
    assert extractor.intercept(batch) == [event("no digits", a="1"), event("42", n="42")]


def test_regex_extractor_overwrites_an_existing_header():
    extractor = build("regex_extractor", {"regex": "(\\d+)", "serializers": "s1", "serializers.s1.name": "n"})
    assert extractor.intercept([event("7", n="old")])[0].headers == {"n": "7"}


def test_regex_extractor_pass_through_serializer_by_class_name():
    extractor = build("regex_extractor", {
        "regex": "(\\d+)", "serializers": "s1", "serializers.s1.name": "n",
        "serializers.s1.type": "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer",
    })
    assert extractor.intercept([event("id 9")])[0].headers == {"n": "9"}


@pytest.mark.parametrize(("params", "keys"), [
    ({"serializers": "s1", "serializers.s1.name": "n"}, ["regex"]),
    ({"regex": "(a)"}, ["serializers"]),
    ({"regex": "", "serializers": "s1", "serializers.s1.name": "n"}, ["regex"]),
    ({"regex": "(a", "serializers": "s1", "serializers.s1.name": "n"}, ["regex"]),
    ({"regex": "(a)", "serializers": ""}, ["serializers"]),
    ({"regex": "(a)", "serializers": "s1"}, ["serializers.s1.name"]),
    ({"regex": "(a)", "serializers": "s1", "serializers.s1.name": "n", "serializers.s1.type": "com.example.Nope"},
     ["serializers.s1.type"]),
    ({"regex": "(a)", "serializers": "s1", "serializers.s1.name": "n", "serializers.s1.type": MILLIS},
     ["serializers.s1.pattern"]),
    ({"regex": "(a)", "serializers": "s1", "serializers.s1.name": "n", "serializers.s1.type": MILLIS,
      "serializers.s1.pattern": "yyyy-MM-dd G"}, ["serializers.s1.pattern"]),
])
def test_regex_extractor_settings_that_cannot_work_are_config_problems(params, keys):
    assert problem_keys("regex_extractor", params) == keys


def test_regex_extractor_reports_every_problem_at_once():
    assert problem_keys("regex_extractor", {
        "regex": "(", "serializers": "s1 s2", "serializers.s2.name": "x", "serializers.s2.type": "bogus",
    }) == ["regex", "serializers.s1.name", "serializers.s2.type"]


# --- through the config model ----------------------------------------------------------------


def test_interceptor_problems_are_reported_by_config_validation_with_their_location():
    config = parse_properties(textwrap.dedent("""
        a1.sources = r1
        a1.channels = c1
        a1.sinks = k1
        a1.sources.r1.type = seq
        a1.sources.r1.channels = c1
        a1.sources.r1.interceptors = i1 i2 i3
        a1.sources.r1.interceptors.i1.type = search_replace
        a1.sources.r1.interceptors.i1.searchPattern = (
        a1.sources.r1.interceptors.i2.type = regex_extractor
        a1.sources.r1.interceptors.i2.regex = (\\\\d)
        a1.sources.r1.interceptors.i2.serializers = s1
        a1.sources.r1.interceptors.i3.type = regex_filter
        a1.sources.r1.interceptors.i3.regex = ok
        a1.channels.c1.type = memory
        a1.sinks.k1.type = null
        a1.sinks.k1.channel = c1
    """))
    found = {(p.component, p.key, p.severity) for p in validate(config)}
    assert found == {
        ("sources.r1", "interceptors.i1.searchPattern", "error"),
        ("sources.r1", "interceptors.i2.serializers.s1.name", "error"),
    }


def test_search_replace_named_group_reference_survives_the_config_layer():
    interceptor = build("search_replace", {"searchPattern": "(?<unit>[A-Z]+)", "replaceString": "<${unit}>"})
    assert interceptor.intercept([event("42 EUR")])[0].body == b"42 <EUR>"

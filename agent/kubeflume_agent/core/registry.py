"""Component type names -> classes, with Flume's aliases and fully qualified class names.

A flume.conf names a component by alias (`netcat`), case-insensitively, or by its Java class
(`org.apache.flume.source.NetcatSource`); both resolve to our implementation, so existing files
run unchanged. Any other name is taken as a Python path (`package.module:Class` or
`package.module.Class`) to a custom component. Modules are imported only when used.
"""

from __future__ import annotations

import importlib

FLUME = "org.apache.flume."

# kind -> {alias or Java class name (lower-case): "module:Class" below kubeflume_agent}
_TABLE: dict[str, dict[str, str]] = {
    "source": {
        "seq": "sources.seq:SequenceSource",
        "netcat": "sources.netcat:NetcatSource",
        "netcatudp": "sources.netcat_udp:NetcatUdpSource",
        "syslogtcp": "sources.syslog:SyslogTcpSource",
        "syslogudp": "sources.syslog:SyslogUdpSource",
        "multiport_syslogtcp": "sources.syslog:MultiportSyslogTcpSource",
        "http": "sources.http:HttpSource",
        "avro": "sources.avro:AvroSource",
        "thrift": "sources.thrift:ThriftSource",
        "scribe": "sources.scribe:ScribeSource",
        "avrolegacy": "sources.legacy:AvroLegacySource",
        "thriftlegacy": "sources.legacy:ThriftLegacySource",
        "exec": "sources.exec:ExecSource",
        "spooldir": "sources.spooldir:SpoolDirectorySource",
        "taildir": "sources.taildir:TaildirSource",
        FLUME + "source.sequencegeneratorsource": "sources.seq:SequenceSource",
        FLUME + "source.netcatsource": "sources.netcat:NetcatSource",
        FLUME + "source.netcatudpsource": "sources.netcat_udp:NetcatUdpSource",
        FLUME + "source.syslogtcpsource": "sources.syslog:SyslogTcpSource",
        FLUME + "source.syslogudpsource": "sources.syslog:SyslogUdpSource",
        FLUME + "source.multiportsyslogtcpsource": "sources.syslog:MultiportSyslogTcpSource",
        FLUME + "source.http.httpsource": "sources.http:HttpSource",
        FLUME + "source.avrosource": "sources.avro:AvroSource",
        FLUME + "source.thriftsource": "sources.thrift:ThriftSource",
        FLUME + "source.scribe.scribesource": "sources.scribe:ScribeSource",
        FLUME + "source.avrolegacy.avrolegacysource": "sources.legacy:AvroLegacySource",
        FLUME + "source.thriftlegacy.thriftlegacysource": "sources.legacy:ThriftLegacySource",
        FLUME + "source.execsource": "sources.exec:ExecSource",
        FLUME + "source.spooldirectorysource": "sources.spooldir:SpoolDirectorySource",
        FLUME + "source.taildir.taildirsource": "sources.taildir:TaildirSource",
    },
    "channel": {
        "memory": "channels.memory:MemoryChannel",
        "file": "channels.file.channel:FileChannel",
        "spillablememory": "channels.spillable:SpillableMemoryChannel",
        FLUME + "channel.memorychannel": "channels.memory:MemoryChannel",
        FLUME + "channel.file.filechannel": "channels.file.channel:FileChannel",
        FLUME + "channel.spillablememorychannel": "channels.spillable:SpillableMemoryChannel",
    },
    "sink": {
        "logger": "sinks.logger:LoggerSink",
        "null": "sinks.null:NullSink",
        "file_roll": "sinks.file_roll:RollingFileSink",
        "avro": "sinks.avro:AvroSink",
        "thrift": "sinks.thrift:ThriftSink",
        "hdfs": "sinks.hdfs.sink:HdfsSink",
        "http": "sinks.http:HttpSink",
        FLUME + "sink.loggersink": "sinks.logger:LoggerSink",
        FLUME + "sink.nullsink": "sinks.null:NullSink",
        FLUME + "sink.rollingfilesink": "sinks.file_roll:RollingFileSink",
        FLUME + "sink.avrosink": "sinks.avro:AvroSink",
        FLUME + "sink.thriftsink": "sinks.thrift:ThriftSink",
        FLUME + "sink.hdfs.hdfseventsink": "sinks.hdfs.sink:HdfsSink",
        FLUME + "sink.http.httpsink": "sinks.http:HttpSink",
    },
    "selector": {
        "replicating": "selectors.builtin:ReplicatingSelector",
        "multiplexing": "selectors.builtin:MultiplexingSelector",
        "load_balancing": "selectors.builtin:LoadBalancingSelector",
        FLUME + "channel.replicatingchannelselector": "selectors.builtin:ReplicatingSelector",
        FLUME + "channel.multiplexingchannelselector": "selectors.builtin:MultiplexingSelector",
        FLUME + "channel.loadbalancingchannelselector": "selectors.builtin:LoadBalancingSelector",
    },
    "processor": {
        "default": "sink_processors.builtin:DefaultSinkProcessor",
        "failover": "sink_processors.builtin:FailoverSinkProcessor",
        "load_balance": "sink_processors.builtin:LoadBalancingSinkProcessor",
        FLUME + "sink.defaultsinkprocessor": "sink_processors.builtin:DefaultSinkProcessor",
        FLUME + "sink.failoversinkprocessor": "sink_processors.builtin:FailoverSinkProcessor",
        FLUME + "sink.loadbalancingsinkprocessor": "sink_processors.builtin:LoadBalancingSinkProcessor",
    },
    "interceptor": {
        "timestamp": "interceptors.builtin:TimestampInterceptor",
        "host": "interceptors.builtin:HostInterceptor",
        "static": "interceptors.builtin:StaticInterceptor",
        "remove_header": "interceptors.builtin:RemoveHeaderInterceptor",
        "uuid": "interceptors.builtin:UUIDInterceptor",
        "search_replace": "interceptors.builtin:SearchReplaceInterceptor",
        "regex_filter": "interceptors.builtin:RegexFilteringInterceptor",
        "regex_extractor": "interceptors.builtin:RegexExtractorInterceptor",
        "kubernetes": "interceptors.kubernetes:KubernetesInterceptor",
        FLUME + "interceptor.timestampinterceptor$builder": "interceptors.builtin:TimestampInterceptor",
        FLUME + "interceptor.hostinterceptor$builder": "interceptors.builtin:HostInterceptor",
        FLUME + "interceptor.staticinterceptor$builder": "interceptors.builtin:StaticInterceptor",
        FLUME + "interceptor.removeheaderinterceptor$builder": "interceptors.builtin:RemoveHeaderInterceptor",
        FLUME + "sink.solr.morphline.uuidinterceptor$builder": "interceptors.builtin:UUIDInterceptor",
        FLUME + "interceptor.searchandreplaceinterceptor$builder": "interceptors.builtin:SearchReplaceInterceptor",
        FLUME + "interceptor.regexfilteringinterceptor$builder": "interceptors.builtin:RegexFilteringInterceptor",
        FLUME + "interceptor.regexextractorinterceptor$builder": "interceptors.builtin:RegexExtractorInterceptor",
    },
    "serializer": {
        "text": "protocols.serializers:TextSerializer",
        "header_and_text": "protocols.serializers:HeaderAndTextSerializer",
        "avro_event": "protocols.serializers:AvroEventSerializer",
        FLUME + "serialization.bodytexteventserializer$builder": "protocols.serializers:TextSerializer",
        FLUME + "serialization.headerandbodytexteventserializer$builder":
            "protocols.serializers:HeaderAndTextSerializer",
        FLUME + "serialization.flumeeventavroeventserializer$builder": "protocols.serializers:AvroEventSerializer",
    },
}

KINDS = tuple(_TABLE)


class UnknownType(LookupError):
    """No component of that kind and type; the message says what would have been accepted."""


def aliases(kind: str) -> list[str]:
    """The short type names of a kind, for docs and error messages."""
    return sorted(name for name in _TABLE[kind] if not name.startswith(FLUME))


def lookup(kind: str, type_name: str) -> type:
    """The class implementing `type_name` of `kind` ("source", "channel", "sink"...)."""
    table = _TABLE[kind]
    target = table.get(type_name.strip().lower())
    if target is not None:
        return _load("kubeflume_agent." + target)
    if "." in type_name or ":" in type_name:
        return _load(type_name.strip())
    raise UnknownType(
        f"unknown {kind} type {type_name!r}; expected one of {', '.join(aliases(kind))} "
        f"or a Python path such as package.module:Class"
    )


def _load(path: str) -> type:
    module_name, _, class_name = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as error:
        raise UnknownType(f"cannot load {path!r}: {error}") from error

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
        "file": "channels.file:FileChannel",
        "spillablememory": "channels.spillable:SpillableMemoryChannel",
        FLUME + "channel.memorychannel": "channels.memory:MemoryChannel",
        FLUME + "channel.file.filechannel": "channels.file:FileChannel",
        FLUME + "channel.spillablememorychannel": "channels.spillable:SpillableMemoryChannel",
    },
    "sink": {
        "logger": "sinks.logger:LoggerSink",
        "null": "sinks.null:NullSink",
        "file_roll": "sinks.file_roll:RollingFileSink",
        "avro": "sinks.avro:AvroSink",
        "thrift": "sinks.thrift:ThriftSink",
        "hdfs": "sinks.hdfs:HdfsSink",
        "http": "sinks.http:HttpSink",
        FLUME + "sink.loggersink": "sinks.logger:LoggerSink",
        FLUME + "sink.nullsink": "sinks.null:NullSink",
        FLUME + "sink.rollingfilesink": "sinks.file_roll:RollingFileSink",
        FLUME + "sink.avrosink": "sinks.avro:AvroSink",
        FLUME + "sink.thriftsink": "sinks.thrift:ThriftSink",
        FLUME + "sink.hdfs.hdfseventsink": "sinks.hdfs:HdfsSink",
        FLUME + "sink.http.httpsink": "sinks.http:HttpSink",
    },
    "selector": {
        "replicating": "runtime.selectors:ReplicatingSelector",
        "multiplexing": "runtime.selectors:MultiplexingSelector",
        "load_balancing": "runtime.selectors:LoadBalancingSelector",
        FLUME + "channel.replicatingchannelselector": "runtime.selectors:ReplicatingSelector",
        FLUME + "channel.multiplexingchannelselector": "runtime.selectors:MultiplexingSelector",
        FLUME + "channel.loadbalancingchannelselector": "runtime.selectors:LoadBalancingSelector",
    },
    "processor": {
        "default": "runtime.sink_processors:DefaultSinkProcessor",
        "failover": "runtime.sink_processors:FailoverSinkProcessor",
        "load_balance": "runtime.sink_processors:LoadBalancingSinkProcessor",
        FLUME + "sink.defaultsinkprocessor": "runtime.sink_processors:DefaultSinkProcessor",
        FLUME + "sink.failoversinkprocessor": "runtime.sink_processors:FailoverSinkProcessor",
        FLUME + "sink.loadbalancingsinkprocessor": "runtime.sink_processors:LoadBalancingSinkProcessor",
    },
    "interceptor": {
        "timestamp": "runtime.interceptors:TimestampInterceptor",
        "host": "runtime.interceptors:HostInterceptor",
        "static": "runtime.interceptors:StaticInterceptor",
        "remove_header": "runtime.interceptors:RemoveHeaderInterceptor",
        "uuid": "runtime.interceptors:UUIDInterceptor",
        "search_replace": "runtime.interceptors:SearchReplaceInterceptor",
        "regex_filter": "runtime.interceptors:RegexFilteringInterceptor",
        "regex_extractor": "runtime.interceptors:RegexExtractorInterceptor",
        FLUME + "interceptor.timestampinterceptor$builder": "runtime.interceptors:TimestampInterceptor",
        FLUME + "interceptor.hostinterceptor$builder": "runtime.interceptors:HostInterceptor",
        FLUME + "interceptor.staticinterceptor$builder": "runtime.interceptors:StaticInterceptor",
        FLUME + "interceptor.removeheaderinterceptor$builder": "runtime.interceptors:RemoveHeaderInterceptor",
        FLUME + "sink.solr.morphline.uuidinterceptor$builder": "runtime.interceptors:UUIDInterceptor",
        FLUME + "interceptor.searchandreplaceinterceptor$builder": "runtime.interceptors:SearchReplaceInterceptor",
        FLUME + "interceptor.regexfilteringinterceptor$builder": "runtime.interceptors:RegexFilteringInterceptor",
        FLUME + "interceptor.regexextractorinterceptor$builder": "runtime.interceptors:RegexExtractorInterceptor",
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

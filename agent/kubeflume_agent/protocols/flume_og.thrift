# Flume OG (0.9.x) event server, served by the thriftLegacy source for old agents' thrift sinks.
# Unframed (buffered) transport, binary protocol.

namespace java com.cloudera.flume.handlers.thrift

typedef i64 Timestamp

enum Priority {
  FATAL = 0,
  ERROR = 1,
  WARN = 2,
  INFO = 3,
  DEBUG = 4,
  TRACE = 5
}

struct ThriftFlumeEvent {
  1: Timestamp timestamp,
  2: Priority priority,
  3: binary body,
  4: i64 nanos,
  5: string host,
  6: map<string, binary> fields
}

service ThriftFlumeEventServer {
  oneway void append(1: ThriftFlumeEvent evt),
  void close(),
}

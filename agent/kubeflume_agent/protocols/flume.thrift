# Flume's ThriftSourceProtocol (flume-ng-sdk/src/main/thrift/flume.thrift), the contract of the
# thrift source and sink; clients generated from Flume's own copy interoperate.

namespace java org.apache.flume.thrift

struct ThriftFlumeEvent {
  1: required map <string, string> headers,
  2: required binary body,
}

enum Status {
  OK,
  FAILED,
  ERROR,
  UNKNOWN
}

service ThriftSourceProtocol {
  Status append(1: ThriftFlumeEvent event),
  Status appendBatch(1: list<ThriftFlumeEvent> events),
}

# Scribe's log service as Flume's scribe source serves it (flume-ng-sources/flume-scribe-source).

enum ResultCode {
  OK,
  TRY_LATER
}

struct LogEntry {
  1: string category,
  2: string message
}

service Scribe {
  ResultCode Log(1: list<LogEntry> messages);
}

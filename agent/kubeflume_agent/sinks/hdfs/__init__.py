"""The HDFS sink: path templates, the buckets (open files) and the sink that rolls them."""

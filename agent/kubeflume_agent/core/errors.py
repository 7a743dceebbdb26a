"""Exceptions shared by every component, named after Flume's so their meaning carries over."""


class ChannelError(Exception):
    """A channel refused an operation (Flume's ChannelException)."""


class ChannelFull(ChannelError):
    """No room in the channel after waiting `keep-alive` (Flume's ChannelFullException).

    Sources turn this into backpressure for their client and never acknowledge what it refused.
    """


class EventDeliveryError(Exception):
    """A sink could not deliver a batch; the transaction was rolled back (EventDeliveryException)."""

"""Live views over SSE: the stream manager, its groups and sessions, framing and activity."""

from qsse.stream.manager import Batch, SessionStream, StreamManager, StreamRequestError, StreamStatistics

__all__ = ["Batch", "SessionStream", "StreamManager", "StreamRequestError", "StreamStatistics"]

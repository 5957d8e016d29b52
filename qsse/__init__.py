"""qsse: one qBittorrent poller per instance, many live torrent views over Server-Sent Events."""

__version__ = "0.1.0"

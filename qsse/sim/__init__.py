"""A process-local fake qBittorrent WebUI for ``qsse demo``, the benchmarks and the tests.

``SimulatedQbt`` serves the WebUI API subset qsse uses over real loopback HTTP; ``Library`` is the pure,
seeded torrent state behind it and ``MainDataSync`` the pure ``sync/maindata`` rid logic.
"""

from qsse.sim.library import ActionRejected, Library
from qsse.sim.maindata import MainDataSync
from qsse.sim.server import SimStatistics, SimulatedQbt

__all__ = ["ActionRejected", "Library", "MainDataSync", "SimStatistics", "SimulatedQbt"]

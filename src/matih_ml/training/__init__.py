"""Training jobs on Ray: the spec, the queue and its executor, the trainers."""

import os

# Ray's driver otherwise installs a C++ failure-signal handler that, on the SIGTERM a
# deploy sends, leaves Ray unable to shut down (ray.shutdown() aborts): the service then
# dies mid-shutdown and the local Ray's agents outlive it. Set before Ray is imported;
# an operator's own value wins.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

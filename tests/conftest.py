"""Suite-wide pytest hooks: how pytest-xdist shares the tests between workers.

scripts/test.sh runs ``pytest -n 2 --dist loadgroup`` (plain ``-n N`` is
treated alike).  The end-to-end tests
are parametrised over Docker engines (tests/e2e/conftest.py): every test of
one engine must run on the same worker, so that each worker starts one
sandbox engine and the two engines run side by side.  xdist's own loadgroup
scheduler finds groups through a suffix it appends to node ids, which pytest
9.2's structured node ids no longer carry; this scheduler groups by the engine
id in the test id instead ("...[docker28]"), and leaves every other test a
unit of its own, as loadgroup does.
"""

from __future__ import annotations

import re

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # without pytest-xdist the suite runs in one process
    LoadScopeScheduling = None

# The id tests/e2e/conftest.py gives each engine: docker20.10, docker28, docker29.
# Docker 29 in nftables mode ("...[docker29-nft]", "[docker29-nftables]") runs
# sandboxes of its own: a unit of its own, so that the two workers share
# Docker 29's tests (one worker running all of 28's and 29's made the run
# ~3 minutes longer than the other's).
ENGINE_ID = re.compile(r"\[(?:[^\]]*-)?(docker\d+(?:\.\d+)?)(-nft[a-z]*)?(?:-[^\]]*)?\]$")


def engine_group(nodeid: str) -> str | None:
    """The engine a test's id names ("docker28", "docker29-nft" in nftables mode), or None."""
    match = ENGINE_ID.search(nodeid)
    if not match:
        return None
    return match.group(1) + ("-nft" if match.group(2) else "")


if LoadScopeScheduling is not None:

    class EngineGroupScheduling(LoadScopeScheduling):
        """loadscope, with one unit per engine and one per other test."""

        def _split_scope(self, nodeid: str) -> str:
            return engine_group(nodeid) or nodeid

    def pytest_xdist_make_scheduler(config, log):
        # plain -n N (dist "load") too: spreading one engine's tests over
        # workers would start that engine once per worker
        if config.getvalue("dist") in ("load", "loadgroup"):
            return EngineGroupScheduling(config, log)
        return None


# Hypothesis profiles (the fuzz suites: tests/unit/test_fuzz_cli.py,
# tests/netns/test_fuzz_netns.py).  "ci", the default, is derandomised, so
# every run (CI's too) tries the same examples and a failure is reproducible;
# "thorough" tries many more, at random, to be run by hand:
#   .venv/bin/python -m pytest --hypothesis-profile=thorough tests/unit/test_fuzz_cli.py
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # the fuzz suites then fail to import, saying why
    pass
else:
    _hypothesis_settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None)
    _hypothesis_settings.register_profile("thorough", max_examples=1000, deadline=None)
    _hypothesis_settings.load_profile("ci")

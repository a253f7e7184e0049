import os

import pytest

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# single-node Ray on the loopback address: no test traffic leaves 127.0.0.1 (read at ray import)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray instance for the whole session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (repeats of a covered case on another "
                          "scheduler, API or page; the full run takes about twice as long)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow") or config.getoption("-m"):
        return   # --slow, or an explicit -m selection, decides for itself
    skip = pytest.mark.skip(reason="slow: run with scripts/test.sh --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

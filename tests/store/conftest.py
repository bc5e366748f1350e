import pytest

from tests.store.bigtable_emulator import Emulator, find_emulator


@pytest.fixture(scope="session")
def shared_emulator():
    """One Bigtable emulator for the tests of this session that need one (not killed by them)."""
    if find_emulator() is None:
        pytest.fail("cbtemulator is not installed (scripts/install-system-deps.sh installs it)")
    with Emulator() as emu:
        yield emu

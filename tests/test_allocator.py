"""The allocator tuning takes effect where glibc is the C library, and is harmless to repeat."""

import ctypes.util
import platform

import pytest

from charrnn.fast.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_takes_effect_on_glibc():
    assert ctypes.util.find_library("c") is not None
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True

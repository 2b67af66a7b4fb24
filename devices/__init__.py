"""The wire contract between devices and the hub, and a device SDK.

This package stands alone: it imports nothing of the hub or the simulators.
"""

from devices.contract import VERSION

__all__ = ["VERSION"]

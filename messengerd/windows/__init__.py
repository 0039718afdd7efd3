"""Windows: the NetBIOS API backend, NetBT's registry settings, the service, WTS popups.

Every Win32 call sits behind a narrow seam (one small class per API) that imports its
Windows-only modules inside the function that needs them, so this package imports on
every platform and its logic is tested on Linux against fakes that follow Microsoft's
documented behaviour. None of it has run on real Windows (service/README.md).
"""

"""Network-management result codes (winerror.h, lmerr.h; PROTOCOL.md §7) and their one error."""

from __future__ import annotations

NERR_BASE = 2100

NERR_Success = 0
ERROR_ACCESS_DENIED = 5
ERROR_NOT_SUPPORTED = 50
ERROR_REM_NOT_LIST = 51
ERROR_INVALID_PARAMETER = 87
ERROR_INVALID_LEVEL = 124
ERROR_MORE_DATA = 234
NERR_NoNetworkResource = NERR_BASE + 5
NERR_BufTooSmall = NERR_BASE + 23
NERR_NetworkError = NERR_BASE + 36
NERR_NameNotFound = NERR_BASE + 173
NERR_AlreadyExists = NERR_BASE + 176
NERR_TooManyNames = NERR_BASE + 177
NERR_DelComputerName = NERR_BASE + 178
NERR_NotLocalName = NERR_BASE + 185
NERR_DuplicateName = NERR_BASE + 197
NERR_DeleteLater = NERR_BASE + 198
NERR_IncompleteDel = NERR_BASE + 199

NAMES: dict[int, str] = {
    code: name
    for name, code in dict(globals()).items()
    if isinstance(code, int) and (name.startswith(("NERR_", "ERROR_"))) and name != "NERR_BASE"
}

DESCRIPTIONS: dict[int, str] = {
    NERR_Success: "The command completed successfully.",
    ERROR_ACCESS_DENIED: "Access is denied.",
    ERROR_NOT_SUPPORTED: "The request is not supported.",
    ERROR_REM_NOT_LIST: "Windows cannot find the network path. Verify that the network path "
    "is correct and the destination computer is not busy or turned off. If Windows still "
    "cannot find the network path, contact your network administrator.",
    ERROR_INVALID_PARAMETER: "The parameter is incorrect.",
    ERROR_INVALID_LEVEL: "The system call level is not correct.",
    ERROR_MORE_DATA: "More data is available.",
    NERR_NoNetworkResource: "A network resource shortage occurred.",
    NERR_BufTooSmall: "The API return buffer is too small.",
    NERR_NetworkError: "A general network error occurred.",
    NERR_NameNotFound: "The message alias could not be found on the network.",
    NERR_AlreadyExists: "This message alias already exists locally.",
    NERR_TooManyNames: "The maximum number of added message aliases has been exceeded.",
    NERR_DelComputerName: "The computer name could not be deleted.",
    NERR_NotLocalName: "The name is not on the local computer.",
    NERR_DuplicateName: "The name is in use as a message alias on another computer.",
    NERR_DeleteLater: "This message alias will be deleted later.",
    NERR_IncompleteDel: "The message alias was not successfully deleted from all networks.",
}


class NetError(Exception):
    """A failed network-management call, carrying its result code and lmerr name."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.name = NAMES.get(code, f"error {code}")
        self.detail = detail
        super().__init__(f"{self.name} ({code}): {detail or describe(code)}")


def describe(code: int) -> str:
    """The sentence `net name` printed for `code`."""
    return DESCRIPTIONS.get(code, f"System error {code} has occurred.")

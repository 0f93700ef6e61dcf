"""Run ``roompulse`` in this process under a ``sys.addaudithook`` recorder.

Usage: ``python tests/audit_service.py OUT.json roompulse-args...``. Every socket connection,
name lookup, file opened for writing, SQLite database and subprocess the service makes is
recorded and written to OUT.json when the service returns. Used by test_privacy_audit.py.
"""

import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
events: dict[str, list] = {
    "connect": [], "internal_connect": [], "getaddrinfo": [], "write_open": [], "sqlite": [], "subprocess": [],
}
_bound_sockets: list = []
recording = True


def _hook(event: str, args: tuple) -> None:
    if not recording:
        return
    if event == "socket.connect":
        address = args[1]
        target = list(address) if isinstance(address, tuple) else str(address)
        # paho wakes its network loop through a loopback socket pair it makes itself (a socket
        # of this process listening on 127.0.0.1): that connection never leaves the process.
        internal = target in [_name(s) for s in _bound_sockets]
        events["internal_connect" if internal else "connect"].append(target)
    elif event == "socket.bind":
        _bound_sockets.append(args[0])
    elif event == "socket.getaddrinfo":
        events["getaddrinfo"].append(str(args[0]))
    elif event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
        if writing and path is not None:
            events["write_open"].append(os.path.abspath(os.fsdecode(path)) if not isinstance(path, int) else f"fd:{path}")
    elif event == "sqlite3.connect":
        events["sqlite"].append(os.path.abspath(os.fsdecode(args[0])))
    elif event == "subprocess.Popen":
        events["subprocess"].append(str(args[0]))


def _name(sock) -> list | None:
    try:
        return list(sock.getsockname())
    except OSError:
        return None


def main() -> int:
    global recording
    out = sys.argv[1]
    sys.addaudithook(_hook)
    from device.cli import main as roompulse

    try:
        code = roompulse(sys.argv[2:])
    finally:
        recording = False
        with open(out, "w") as handle:
            json.dump(events, handle)
    return code


if __name__ == "__main__":
    sys.exit(main())

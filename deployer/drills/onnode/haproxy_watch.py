"""On a node: print the local HAProxy's ``show stat`` as one JSON string per look (argv: stats
socket, seconds between looks); a look that fails prints nothing."""
import json
import socket
import sys
import time

path, period = sys.argv[1], float(sys.argv[2])
while True:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"show stat\n")
            print(json.dumps(b"".join(iter(lambda: sock.recv(65536), b"")).decode()), flush=True)
    except OSError:
        pass
    time.sleep(period)

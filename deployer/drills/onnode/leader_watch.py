"""On a node: print one JSON line per change of the DCS leader key, {"type": "PUT"|"DELETE",
"value": holder}, from ``etcdctl watch`` (argv: key, comma-separated client endpoints, and etcdctl's
CA, certificate and key files)."""
import json
import subprocess
import sys

key, endpoints, ca, cert, tls_key = sys.argv[1:6]
watch = subprocess.Popen(["etcdctl", f"--endpoints={endpoints}", "watch", key], stdout=subprocess.PIPE, text=True,
                         env={"ETCDCTL_API": "3", "ETCDCTL_CACERT": ca, "ETCDCTL_CERT": cert, "ETCDCTL_KEY": tls_key,
                              "PATH": "/usr/bin:/bin"})
event = None
for line in watch.stdout:
    line = line.rstrip("\n")
    if line in ("PUT", "DELETE"):
        if event is not None:
            print(json.dumps(event), flush=True)
        event, fields = {"type": line, "value": None}, 0
    elif event is not None:
        fields += 1
        if fields == 2 and event["type"] == "PUT":
            event["value"] = line
            print(json.dumps(event), flush=True)
            event = None
        elif fields == 1 and event["type"] == "DELETE":
            print(json.dumps(event), flush=True)
            event = None

"""Post KairosDB REST bodies to Conflux with Python `requests`, as
applications written against KairosDB's REST API do.

Usage: kairosdb_client.py HOST PORT
Prints one JSON object with what each request got back; the Rust test that
runs this script checks it and reads back what reached the file sink.
"""
import gzip
import json
import sys

import requests


def main(host, port):
    base = "http://%s:%d/api/v1" % (host, port)
    s = requests.Session()
    out = {}

    # The array form, with both ways to give points, a TTL and every value type.
    array = [
        {
            "name": "archive_file_tracked",
            "datapoints": [[1359788400000, 123], [1359788300000, 13.2], [1359788410000, 23.1]],
            "tags": {"host": "server1", "data_center": "DC1"},
            "ttl": 300,
        },
        {"name": "archive_file_search", "timestamp": 1359786400000, "value": 321, "tags": {"host": "server2"}},
        {"name": "state", "type": "string", "time": 1359786400001, "value": "42", "tags": {"host": "server2"}},
        {"name": "text", "timestamp": 1359786400002, "value": "The Value", "tags": {"host": "server2"}},
    ]
    r = s.post(base + "/datapoints", json=array)
    out["array"] = [r.status_code, r.text]

    # One object, not in an array.
    r = s.post(base + "/datapoints", json={"name": "single", "timestamp": 1359786400003, "value": -7.5, "tags": {"host": "server3"}})
    out["object"] = [r.status_code, r.text]

    # gzip, the current way and the deprecated one.
    body = json.dumps([{"name": "zipped", "timestamp": 1359786400004, "value": 1, "tags": {"how": "content-encoding"}}]).encode()
    r = s.post(base + "/datapoints", data=gzip.compress(body), headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    out["gzip"] = [r.status_code, r.text]
    body = json.dumps([{"name": "zipped", "timestamp": 1359786400005, "value": 2, "tags": {"how": "content-type"}}]).encode()
    r = s.post(base + "/datapoints", data=gzip.compress(body), headers={"Content-Type": "application/gzip"})
    out["gzip_content_type"] = [r.status_code, r.text]

    # Good and bad objects in one body: the good ones are kept.
    mixed = [
        {"name": "good.one", "timestamp": 1359786400006, "value": 1, "tags": {"host": "a"}},
        {"name": "", "timestamp": 1359786400006, "value": 2, "tags": {"host": "a"}},
        {"name": "no.tags", "timestamp": 1359786400006, "value": 3},
        {"name": "good.two", "datapoints": [[1359786400007, 4], [1359786400008, None]], "tags": {"host": "b"}},
        {"name": "custom", "type": "complex-number", "timestamp": 1359786400006, "value": {"real": 1, "imaginary": 2}, "tags": {"host": "c"}},
    ]
    r = s.post(base + "/datapoints", json=mixed)
    out["mixed"] = [r.status_code, r.json()]

    r = s.post(base + "/datapoints", data=b'[{"name": "broken", "value": }]', headers={"Content-Type": "application/json"})
    out["syntax"] = [r.status_code, r.json()]

    r = s.get(base + "/version")
    out["version"] = [r.status_code, r.json()]
    r = s.get(base + "/health/check")
    out["health_check"] = r.status_code
    r = s.get(base + "/health/status")
    out["health_status"] = [r.status_code, r.json()]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

"""Closed-loop HTTP load: C concurrent keep-alive clients POST the same body until N requests or T seconds."""
from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def main() -> None:
    url, path, concurrency, total, seconds, body_file = sys.argv[1:7]
    body = open(body_file, "rb").read()
    host = urlsplit(url)
    concurrency, total, seconds = int(concurrency), int(total), float(seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    remaining = [total]
    deadline = time.perf_counter() + seconds
    barrier = threading.Barrier(concurrency + 1)

    def client() -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        barrier.wait()
        while time.perf_counter() < deadline:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            start = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    print(json.dumps({"requests": len(latencies), "seconds": wall, "statuses": statuses,
                      "latencies": latencies}))


if __name__ == "__main__":
    main()

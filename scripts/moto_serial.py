"""moto_server, handling one request at a time.

moto's threaded server does not lock its DynamoDB backend, so two concurrent conditional writes can both pass their
condition — something DynamoDB itself never allows. The concurrency tests (leases, idempotency claims) need
DynamoDB's atomicity, so the tests run moto serially: requests still interleave, each one is atomic.
Usage: python moto_serial.py -H 127.0.0.1 -p PORT"""
import sys

from moto import server

_run_simple = server.run_simple


def _serial(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


server.run_simple = _serial
server.main(sys.argv[1:])

"""Gateways: tablewatch stores served over other systems' wire protocols.

- :mod:`tablewatch.gateway.hbase_thrift` serves the HBase Thrift v1 API (what
  happybase and the other HBase Thrift clients speak) over any tablewatch store:
  ``tablewatch gateway hbase-thrift --store URL --host 127.0.0.1 --port 9090``.

Nothing is imported here, so importing the package has no side effects.
"""

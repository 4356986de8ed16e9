"""Adapters: the only modules that know the client libraries.

* :mod:`cachecore.adapters.blocking`: transports over redis-py's and valkey-py's
  blocking clients (and any client with their API), with the pooled fast path;
* :mod:`cachecore.adapters.aio`: transports over their asyncio clients;
* :mod:`cachecore.adapters.libraries`: what differs between the libraries (exception
  types, versions the fast path was tested with);
* :mod:`cachecore.adapters.retry`: sending a command once, never retried.

Each module imports a client library only when a client of it is handed over.
"""

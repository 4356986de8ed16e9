"""Backends that let web frameworks use cachecore through their own cache settings.

Each module imports its framework, so import one only where that framework is installed
(``pip install cachecore[django]``...); ``import cachecore`` never imports a framework.

* :mod:`cachecore.contrib.django`: ``CachecoreCache``, a Django cache backend.
"""

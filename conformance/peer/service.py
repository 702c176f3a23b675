"""Stand-ins for kafka-python's test/service.py (not shipped in its sdist): korvet is already
running, so the fixtures talk to it as an external service and never spawn anything."""


class ExternalService(object):
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def open(self):
        pass

    def close(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService(object):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("the korvet peer run uses an external broker (KAFKA_URI); nothing is spawned")

"""iot_mqtt: every line of hand-written MQTT in the project, on the ground floor.

- :mod:`iot_mqtt.codec`: the one MQTT codec: variable byte integers and PUBLISH packets,
  each encoded and decoded by exactly one function.
- :mod:`iot_mqtt.wire`: splitting received bytes into packets (the worker's fast reader).
- :mod:`iot_mqtt.paho_client`: paho's client with the worker's fast reader (many PUBLISH
  packets per socket read); refuses to import with a paho-mqtt other than 2.2.x.
- :mod:`iot_mqtt.connection`: broker URLs (``mqtt://``, ``mqtts://``, ``ws://``, ``wss://``)
  and paho client construction, shared by the worker and the simulator.
- :mod:`iot_mqtt.rawpub`: a minimal pipelined MQTT 3.1.1 publisher for benchmark load.

Services import this package; it imports only the standard library and paho-mqtt. See
docs/mqtt.md (the codec, the fast reader, the paho internals it uses, the version pin).
"""

__all__ = ["codec", "connection", "paho_client", "rawpub", "wire"]

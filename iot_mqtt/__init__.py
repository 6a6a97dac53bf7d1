"""iot_mqtt: every line of hand-written MQTT in the project, on the ground floor.

- :mod:`iot_mqtt.connection`: broker URLs (``mqtt://``, ``mqtts://``, ``ws://``, ``wss://``)
  and paho client construction, shared by the worker and the simulator.
- :mod:`iot_mqtt.wire`: the MQTT packet codec (variable-length integers, PUBLISH
  encoding and decoding, splitting a read into packets).
- :mod:`iot_mqtt.paho_client`: paho's client with the worker's fast reader (many PUBLISH
  packets per socket read).
- :mod:`iot_mqtt.rawpub`: a minimal pipelined MQTT 3.1.1 publisher for benchmark load.

Services import this package; it imports only the standard library, paho-mqtt and
:mod:`iot_contract`.
"""

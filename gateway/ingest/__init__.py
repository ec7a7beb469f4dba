"""The plant's own MQTT data: the ingest rules of the site file (``ingest:``), each read by the
decoder of its payload format into PlantWire samples (docs/ingest.md)."""
